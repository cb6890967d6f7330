//! The chat room through the proxy: ten clients each hear every other client's messages
//! in order, while one leaves midway and one never reads.

use crate::support::DEADLINE;
use crate::tunnels::TunnelBench;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CLIENTS: usize = 10;
const MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_clients_through_the_proxy_hear_each_other_in_order() {
    let bench = TunnelBench::start().await;
    let chat = bench.origin.chat_addr().unwrap().to_string();
    let proxy = bench.proxy_addr();

    // Everyone joins (the greeting means the room has them) before anyone speaks.
    let mut members = Vec::new();
    for i in 0..CLIENTS {
        let stream = client::net::connect(&chat, Some(&proxy)).await.unwrap();
        let (read, write) = tokio::io::split(stream);
        let mut lines = BufReader::new(read).lines();
        let greeting = lines.next_line().await.unwrap().unwrap();
        assert!(greeting.starts_with("* welcome"), "client {i}: {greeting}");
        members.push((lines, write));
    }
    // One member that never reads: it must not hold anyone up.
    let staller = client::net::connect(&chat, Some(&proxy)).await.unwrap();
    // One member that leaves as soon as it has spoken.
    let leaver = {
        let stream = client::net::connect(&chat, Some(&proxy)).await.unwrap();
        let (read, mut write) = tokio::io::split(stream);
        let mut lines = BufReader::new(read).lines();
        lines.next_line().await.unwrap();
        write
            .write_all(b"/name leaver\nbye now\n!DISCONNECT\n")
            .await
            .unwrap();
        lines
    };

    let mut tasks = Vec::new();
    for (i, (mut lines, mut write)) in members.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut out = format!("/name c{i}\n");
            for m in 0..MESSAGES {
                out.push_str(&format!("c{i} says {m}\n"));
            }
            write.write_all(out.as_bytes()).await.unwrap();
            // Collect every other client's messages, per sender, in arrival order.
            let mut heard: Vec<Vec<usize>> = vec![Vec::new(); CLIENTS];
            let expected = (CLIENTS - 1) * MESSAGES;
            let mut got = 0;
            while got < expected {
                let line = tokio::time::timeout(DEADLINE, lines.next_line())
                    .await
                    .expect("messages keep arriving")
                    .unwrap()
                    .expect("the room stays open");
                let Some(rest) = line.strip_prefix("[c") else {
                    continue;
                };
                let (sender, text) = rest.split_once("] ").unwrap();
                let sender: usize = sender.parse().unwrap();
                assert_ne!(sender, i, "a member never hears itself");
                let n: usize = text.rsplit(' ').next().unwrap().parse().unwrap();
                heard[sender].push(n);
                got += 1;
            }
            (i, heard, write)
        }));
    }
    for task in tasks {
        let (i, heard, _write) = task.await.unwrap();
        for (sender, numbers) in heard.iter().enumerate() {
            if sender == i {
                continue;
            }
            assert_eq!(
                numbers,
                &(0..MESSAGES).collect::<Vec<_>>(),
                "client {i} hearing c{sender}"
            );
        }
    }
    drop(staller);
    drop(leaver);
    bench.stop().await;
}
