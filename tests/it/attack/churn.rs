//! Interface churn: scrapes stay whole while interfaces come and go.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crate::util::*;

/// The series of the interfaces that stay, from one scrape.
fn stable_series(body: &str) -> Vec<&str> {
    body.lines()
        .filter(|l| {
            ["\"ie-a\"", "\"ie-b\"", "\"lo\""]
                .iter()
                .any(|name| l.contains(&format!("{{interface={name}")))
        })
        .collect()
}

#[test]
fn scrapes_stay_whole_while_interfaces_come_and_go() -> Result {
    for_each_source(|source| {
        const SCRAPES: usize = 300;
        const PAIRS: usize = 3;
        let ns = Netns::with_pair()?;
        let exp = ns.exporter(&[source])?;
        let reference = wait_for("ie-a and ie-b up", DEADLINE, || {
            let body = ns.get(&exp, "/metrics").ok()?.text();
            let up = |i: &str| sample(&body, &format!("interface_carrier{{interface=\"{i}\"}}"));
            (up("ie-a").as_deref() == Some("1") && up("ie-b").as_deref() == Some("1")).then_some(())
        })
        .and_then(|()| Ok(ns.get(&exp, "/metrics")?.text()))?;
        let expected = stable_series(&reference);
        // lo, ie-a and ie-b, each with every family a running interface has.
        for family in [
            "interface_status{",
            "interface_oper_state{",
            "interface_admin_up{",
            "interface_carrier{",
            "interface_carrier_changes_total{",
            "interface_mtu_bytes{",
            "interface_info{",
        ] {
            for name in ["ie-a", "ie-b", "lo"] {
                let series = format!("{family}interface=\"{name}\"");
                assert!(
                    expected.iter().any(|l| l.starts_with(&series)),
                    "{series} missing:\n{reference}"
                );
            }
        }

        let stop = Arc::new(AtomicBool::new(false));
        let cycles = Arc::new(AtomicUsize::new(0));
        let churn = {
            let (stop, cycles, name) = (Arc::clone(&stop), Arc::clone(&cycles), ns.name.clone());
            thread::spawn(move || -> std::result::Result<(), String> {
                let ip = |args: &str| -> std::result::Result<(), String> {
                    run(Command::new("ip")
                        .args(["-n", &name])
                        .args(args.split_whitespace()))
                    .map(drop)
                    .map_err(|e| e.to_string())
                };
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..PAIRS {
                        ip(&format!("link add chx{i} type veth peer name chy{i}"))?;
                        ip(&format!("link set chx{i} up"))?;
                    }
                    for i in 0..PAIRS {
                        ip(&format!("link del chx{i}"))?;
                    }
                    cycles.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        };

        let start = Instant::now();
        let script = format!(
            "for i in $(seq {SCRAPES}); do curl -s -i --max-time 10 -w '<<scrape-end>>' http://{}/metrics; done",
            exp.addr
        );
        let out = ns
            .cmd("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("sh in the namespace: {e}"))?;
        let took = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        churn.join().map_err(|_| "churn thread panicked")??;
        let cycles = cycles.load(Ordering::Relaxed);

        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let out = String::from_utf8(out.stdout)?;
        let pieces: Vec<&str> = out
            .split("<<scrape-end>>")
            .filter(|p| !p.is_empty())
            .collect();
        assert_eq!(
            pieces.len(),
            SCRAPES,
            "curl (scripts/test.sh installs it) failed somewhere: {stderr}\n{}",
            &out[..out.len().min(2000)]
        );
        let (mut with_churn, mut with_errors) = (0, 0);
        for (i, piece) in pieces.iter().enumerate() {
            // Framed exactly by its Content-Length, with nothing cut off and nothing after.
            let r = parse_response(piece.as_bytes(), Framing::Length)
                .map_err(|e| format!("scrape {i}: {e}"))?;
            assert_eq!(r.status, 200, "scrape {i}: {}", r.text());
            let body = &r.text();
            check_exposition(body).map_err(|e| format!("scrape {i}: {e}"))?;
            assert_eq!(stable_series(body), expected, "scrape {i}: {body}");
            if body.contains("{interface=\"chx") || body.contains("{interface=\"chy") {
                with_churn += 1;
            }
            if sample(body, "interfaces_exporter_scrape_errors").as_deref() != Some("0") {
                with_errors += 1;
            }
        }
        eprintln!(
            "churn: {SCRAPES} scrapes in {took:?} while {cycles} cycles added and deleted {PAIRS} \
             veth pairs; {with_churn} scrapes saw churning interfaces, {with_errors} counted errors"
        );
        // The churn really overlapped the scrapes.
        assert!(
            cycles >= 5 && with_churn > 0,
            "{cycles} cycles, {with_churn}"
        );
        // An interface deleted mid-scrape reads ENOENT or ENODEV, which are "no sample", not faults.
        assert_eq!(
            with_errors, 0,
            "scrapes that counted errors while interfaces vanished"
        );
        Ok(())
    })
}
