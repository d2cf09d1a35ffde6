//! The command line as a user meets it: help, version, bad flags, bad roots, busy ports.

use std::process::{Command, Stdio};

use crate::util::*;

fn run_bin(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(BIN).args(args).stdin(Stdio::null()).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn help_lists_every_flag_with_its_default() -> Result {
    let (code, out, err) = run_bin(&["--help"])?;
    assert_eq!(code, 0, "{err}");
    for needle in [
        "--web.listen-address=ADDR",
        "[default: :9425]",
        "--web.telemetry-path=PATH",
        "[default: /metrics]",
        "--web.max-connections=N",
        "[default: 256]",
        "--web.read-timeout=SECONDS",
        "[default: 10]",
        "--web.idle-timeout=SECONDS",
        "[default: 60]",
        "--path.sysfs=DIR",
        "--log.level=LEVEL",
        "[default: info]",
        "--version",
    ] {
        assert!(out.contains(needle), "--help lacks {needle}:\n{out}");
    }
    let (code, short, _) = run_bin(&["-h"])?;
    assert_eq!((code, short), (0, out));
    Ok(())
}

#[test]
fn version_prints_the_crate_version() -> Result {
    let (code, out, _) = run_bin(&["--version"])?;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("interfaces_exporter {}\n", env!("CARGO_PKG_VERSION"))
    );
    Ok(())
}

#[test]
fn usage_errors_are_one_line_and_exit_2() -> Result {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "'--bogus'"),
        (&["--web.listen-address=nonsense"], "\"nonsense\""),
        (&["--web.listen-address"], "--web.listen-address"),
        (&["--web.max-connections=lots"], "\"lots\""),
        (&["--web.read-timeout=-5"], "\"-5\""),
        (&["--web.idle-timeout=0"], "\"0\""),
        (&["--web.telemetry-path=metrics"], "\"metrics\""),
        (&["--log.level=loud"], "\"loud\""),
        (&["--interfaces.include=[eth"], "\"[eth\""),
        (&["--path.sysfs="], "--path.sysfs"),
        (&["--path.sysfs", ""], "--path.sysfs"),
        (&["stray"], "\"stray\""),
    ];
    for (args, names) in cases {
        let (code, out, err) = run_bin(args)?;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} printed to stdout: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(names), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    Ok(())
}

/// The write end of a pipe whose only reader has exited: every write to it fails with EPIPE,
/// as `interfaces_exporter --help | true` does once `true` is gone.
fn broken_pipe() -> Result<Stdio> {
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let end = reader.stdin.take().ok_or("no pipe")?;
    reader.wait()?;
    Ok(Stdio::from(end))
}

#[test]
fn a_reader_that_went_away_is_no_crash() -> Result {
    for flag in ["--help", "--version"] {
        let out = Command::new(BIN)
            .arg(flag)
            .stdin(Stdio::null())
            .stdout(broken_pipe()?)
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}: {err}", out.status);
        assert!(err.is_empty(), "{flag}: {err}");
    }
    // A bad flag whose one-line message cannot be written still exits 2, with the message's
    // stream a broken pipe or closed.
    let out = Command::new(BIN)
        .arg("--bogus")
        .stdin(Stdio::null())
        .stderr(broken_pipe()?)
        .output()?;
    assert_eq!(out.status.code(), Some(2), "{}", out.status);
    assert!(out.stdout.is_empty());
    for script in [r#"exec "$0" --bogus 2>&-"#, r#"exec "$0" --help >&-"#] {
        let out = Command::new("sh")
            .args(["-c", script, BIN])
            .stdin(Stdio::null())
            .output()?;
        let expected = if script.contains("--help") { 0 } else { 2 };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{script}: {}",
            out.status
        );
    }
    Ok(())
}

#[test]
fn a_root_without_class_net_is_named_and_exits_1() -> Result {
    let dir = TempDir::new()?;
    let missing = dir.0.join("nothing-here");
    let (code, _, err) = run_bin(&[
        "--web.listen-address=127.0.0.1:0",
        &format!("--path.sysfs={}", missing.display()),
    ])?;
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{}/class/net", missing.display())),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_busy_port_is_named_and_fails_at_once() -> Result {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let fixture = Fixture::new()?;
    let start = std::time::Instant::now();
    let (code, _, err) = run_bin(&[&format!("--web.listen-address={addr}"), &fixture.flag()])?;
    assert!(start.elapsed() < DEADLINE);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    Ok(())
}

#[test]
fn the_chosen_root_and_every_address_are_logged() -> Result {
    let fixture = Fixture::new()?;
    fixture.ethernet("eth0", "up")?;
    let exp = Exporter::start(&[&fixture.flag(), "--web.listen-address=[::1]:0"])?;
    wait_for("two listening lines", DEADLINE, || {
        (exp.log().matches("msg=listening").count() == 2).then_some(())
    })?;
    let log = exp.log();
    assert!(
        log.contains(&format!("sysfs={}", fixture.root().display())),
        "{log}"
    );
    assert!(log.contains("version="), "{log}");
    assert!(log.contains("address=[::1]:"), "{log}");
    for line in log.lines() {
        assert!(
            line.starts_with("ts=") && line.contains(" level="),
            "not logfmt: {line}"
        );
    }
    Ok(())
}
