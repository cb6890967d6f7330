//! `lab doctor`: which of the sandbox's protections this machine allows, and what is
//! missing and why — what every report will say it graded under.

pub fn run() -> anyhow::Result<()> {
    let sandbox = labs::sandbox::sandbox();
    let p = &sandbox.protections;
    let yes_no = |r: &Result<(), String>| match r {
        Ok(()) => "yes".to_string(),
        Err(e) => format!("no — {e}"),
    };
    println!(
        "proxylab's sandbox on this machine (lab {}):\n",
        crate::VERSION
    );
    println!(
        "  running as root:           {}",
        if p.root {
            "yes — programs run as a user of their own"
        } else {
            "no — programs run as this user, kept apart by the rest"
        }
    );
    match &p.helper {
        Ok(path) => println!("  sandbox helper:            {}", path.display()),
        Err(e) => println!("  sandbox helper:            missing — {e}"),
    }
    println!("  PID namespace:             {}", yes_no(&p.pid_namespace));
    println!(
        "  mount namespace:           {}",
        yes_no(&p.mount_namespace)
    );
    println!(
        "  cgroup v2 with cgroup.kill: {}",
        match &p.cgroup {
            Ok(dir) => format!("yes ({})", dir.display()),
            Err(e) => format!("no — {e}"),
        }
    );
    println!("  network namespace:         {}", yes_no(&p.network));
    println!(
        "  Landlock:                  {}",
        match &p.landlock {
            Ok(abi) => format!("yes (ABI {abi})"),
            Err(e) => format!("no — {e}"),
        }
    );
    let mut isolation = sandbox.isolation(&labs::sandbox::Limits::RUN, true);
    // `lab run` enters the namespace at its start; say what it would get.
    if p.network.is_ok() {
        isolation.network =
            "a network namespace of its own: only lo, shared with origin-sim and the grader".into();
        isolation.partial.retain(|l| !l.starts_with("network:"));
    }
    println!("\nA submission graded here runs under:");
    for line in isolation.lines() {
        println!("  {line}");
    }
    if isolation.partial.is_empty() {
        println!("\nEverything is in force.");
    }
    Ok(())
}
