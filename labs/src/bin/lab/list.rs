//! `lab list`: the labs, their checks and points.

use std::path::Path;

pub fn run(points: Option<&Path>) -> anyhow::Result<()> {
    for lab in crate::shared::labs_with(points)? {
        println!(
            "Lab {}: {} ({} points)",
            lab.number,
            lab.title,
            lab.points()
        );
        for check in &lab.checks {
            println!("  {:<20} {:>3}  {}", check.id, check.points, check.proves);
        }
        println!();
    }
    Ok(())
}
