//! The container image: scripts/build-image.sh builds the amd64 and arm64 images with podman
//! (no registry, no OCI runtime), pushes them to an OCI layout, and each image's root file
//! system then runs as a container would run it: PID 1 of its own PID namespace, uid 65534, an
//! otherwise empty root with the host's /sys read-only at /host/sys, and no flags.
//!
//! The arm64 image runs under qemu-aarch64-static, copied into the extracted root (not into
//! the image), since this machine has no binfmt_misc to start it transparently.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::deploy::{scrape_default_port, status_names};
use crate::util::*;

/// The platforms the image is built for: (OCI architecture, Rust target, ELF e_machine).
const PLATFORMS: [(&str, &str, u16); 2] = [
    ("amd64", "x86_64-unknown-linux-musl", 62),
    ("arm64", "aarch64-unknown-linux-musl", 183),
];

/// How long a container stop may take: the exporter exits on SIGTERM within a second, so a
/// runtime never has to wait out its grace period and send SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(1);

/// A JSON value, parsed just far enough to read podman's output and an OCI layout.
#[derive(Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

const NULL: Json = Json::Null;

impl Json {
    fn parse(text: &str) -> Result<Json> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let value = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("JSON has trailing bytes at {}", p.i).into());
        }
        Ok(value)
    }

    /// The member `key` of an object, or null when there is none (as for a missing key).
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(members) => members
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(items) => items,
            _ => &[],
        }
    }

    fn keys(&self) -> Vec<&str> {
        match self {
            Json::Obj(members) => members.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Result<u8> {
        let b = *self.s.get(self.i).ok_or("JSON ends early")?;
        self.i += 1;
        Ok(b)
    }

    /// The members of an object or the items of an array, from its opening byte to `close`,
    /// each read by `item`: both are lists with the same commas.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.i += 1;
        self.ws();
        if self.s.get(self.i) == Some(&close) {
            self.i += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            self.ws();
            match self.next()? {
                b',' => continue,
                b if b == close => return Ok(()),
                _ => return Err(format!("JSON: bad list at byte {}", self.i).into()),
            }
        }
    }

    fn value(&mut self) -> Result<Json> {
        self.ws();
        match self.s.get(self.i).copied().ok_or("JSON ends early")? {
            b'{' => {
                let mut members = Vec::new();
                self.items(b'}', |p| {
                    p.ws();
                    let key = p.string()?;
                    p.ws();
                    if p.next()? != b':' {
                        return Err(format!("JSON: no ':' before byte {}", p.i).into());
                    }
                    members.push((key, p.value()?));
                    Ok(())
                })?;
                Ok(Json::Obj(members))
            }
            b'[' => {
                let mut items = Vec::new();
                self.items(b']', |p| {
                    items.push(p.value()?);
                    Ok(())
                })?;
                Ok(Json::Arr(items))
            }
            b'"' => Ok(Json::Str(self.string()?)),
            _ => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|b| !b",]} \t\r\n".contains(b))
                {
                    self.i += 1;
                }
                let word = std::str::from_utf8(&self.s[start..self.i])?;
                match word {
                    "null" => Ok(Json::Null),
                    "true" => Ok(Json::Bool(true)),
                    "false" => Ok(Json::Bool(false)),
                    _ if word.parse::<f64>().is_ok() => Ok(Json::Num(word.to_owned())),
                    _ => Err(format!("JSON: bad value {word:?} at byte {start}").into()),
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self.s.get(self.i..self.i + 4).ok_or("JSON ends early")?;
        self.i += 4;
        Ok(u32::from_str_radix(std::str::from_utf8(digits)?, 16)?)
    }

    fn string(&mut self) -> Result<String> {
        if self.next()? != b'"' {
            return Err(format!("JSON: no string at byte {}", self.i - 1).into());
        }
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return Ok(String::from_utf8(out)?),
                b'\\' => {
                    let c = match self.next()? {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let mut code = self.hex4()?;
                            // Go escapes characters outside the basic plane as surrogate pairs.
                            if (0xd800..0xdc00).contains(&code)
                                && self.s.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                self.i += 2;
                                let low = self.hex4()?;
                                code =
                                    0x10000 + ((code - 0xd800) << 10) + (low.wrapping_sub(0xdc00));
                            }
                            char::from_u32(code).ok_or("JSON: bad \\u escape")?
                        }
                        other => other as char,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b => out.push(b),
            }
        }
    }
}

#[test]
fn json_reader_reads_what_podman_writes() -> Result {
    #[track_caller]
    fn check(input: &str, expected: Json) {
        assert_eq!(Json::parse(input).unwrap(), expected, "{input}");
    }
    check(
        r#" {"a": [1, "x\u003cy\n", true, null], "b": {}} "#,
        Json::Obj(vec![
            (
                "a".into(),
                Json::Arr(vec![
                    Json::Num("1".into()),
                    Json::Str("x<y\n".into()),
                    Json::Bool(true),
                    Json::Null,
                ]),
            ),
            ("b".into(), Json::Obj(vec![])),
        ]),
    );
    check(
        r#""\ud83d\ude00 \"q\" \\""#,
        Json::Str("\u{1f600} \"q\" \\".into()),
    );
    check("[]", Json::Arr(vec![]));
    // The last two close a list with the other kind of bracket, which the one list reader of
    // objects and arrays must refuse.
    let bad = [
        "",
        "{",
        r#"{"a" 1}"#,
        "[1 2]",
        "nul",
        r#""open"#,
        "{} x",
        r#"{"a": 1]"#,
        "[1}",
    ];
    for bad in bad {
        assert!(Json::parse(bad).is_err(), "{bad:?} parsed");
    }
    Ok(())
}

/// The manifest list and its images in podman's storage, removed on drop so that repeated test
/// runs do not pile up images.
struct ImageList {
    list: String,
}

impl ImageList {
    fn inspect(&self) -> Result<(String, Json)> {
        let text = run(Command::new("podman").args(["manifest", "inspect", &self.list]))?;
        let json = Json::parse(&text)?;
        Ok((text, json))
    }
}

impl Drop for ImageList {
    fn drop(&mut self) {
        let Ok((_, list)) = self.inspect() else {
            return;
        };
        let ids: Vec<String> = list
            .get("manifests")
            .arr()
            .iter()
            .filter_map(|m| m.get("digest").str())
            .filter_map(|digest| {
                run(Command::new("podman").args([
                    "image",
                    "inspect",
                    "--format",
                    "{{.Id}}",
                    &format!("{}@{digest}", self.list),
                ]))
                .ok()
            })
            .map(|id| id.trim().to_owned())
            .collect();
        let _ = run(Command::new("podman").args(["manifest", "rm", &self.list]));
        if !ids.is_empty() {
            let _ = run(Command::new("podman").arg("rmi").args(&ids));
        }
    }
}

/// An OCI image layout directory, as `podman manifest push --all LIST oci:DIR` writes it.
struct Layout(PathBuf);

impl Layout {
    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let (algorithm, hex) = digest.split_once(':').ok_or("a digest without ':'")?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("not a digest: {digest}").into());
        }
        Ok(self.0.join("blobs").join(algorithm).join(hex))
    }

    fn json(&self, digest: &str) -> Result<Json> {
        Json::parse(&std::fs::read_to_string(self.blob_path(digest)?)?)
    }

    /// The manifest of each platform of the one image index the layout holds.
    fn manifests(&self) -> Result<Vec<(String, Json)>> {
        let top = Json::parse(&std::fs::read_to_string(self.0.join("index.json"))?)?;
        let [entry] = top.get("manifests").arr() else {
            return Err(format!("the layout should hold one manifest list: {top:?}").into());
        };
        assert_eq!(
            entry.get("mediaType").str(),
            Some("application/vnd.oci.image.index.v1+json")
        );
        let index = self.json(entry.get("digest").str().ok_or("no digest")?)?;
        let mut out = Vec::new();
        for m in index.get("manifests").arr() {
            let platform = m.get("platform");
            assert_eq!(platform.get("os").str(), Some("linux"), "{m:?}");
            let arch = platform.get("architecture").str().ok_or("no arch")?;
            out.push((
                arch.to_owned(),
                self.json(m.get("digest").str().ok_or("no digest")?)?,
            ));
        }
        Ok(out)
    }
}

/// What the ELF header of a file says: (e_type, e_machine).
fn elf_type_and_machine(path: &Path) -> Result<(u16, u16)> {
    let bytes = std::fs::read(path)?;
    let head = bytes.get(..20).ok_or("shorter than an ELF header")?;
    if &head[..4] != b"\x7fELF" {
        return Err(format!("{} is not an ELF file", path.display()).into());
    }
    let le = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
    Ok((le(16), le(18)))
}

/// Every path in a directory tree, relative to it, sorted.
fn tree(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            out.push(path.strip_prefix(dir)?.display().to_string());
            if path.is_dir() && !path.is_symlink() {
                todo.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Runs an extracted root file system as a container runtime would, and checks it reports the
/// host's interfaces and stops promptly on SIGTERM.
fn run_as_pid_1(arch: &str, root: &Path, program: &[&str]) -> Result {
    std::fs::create_dir_all(root.join("host/sys"))?;
    let ns = Netns::new()?;
    // An interface only the namespace has: the exporter must not report it, since it reads the
    // host's /sys through /host/sys, not the namespace's.
    ns.ip("link add nsonly-a type veth peer name nsonly-b")?;
    // The bind mount is made in a mount namespace of its own, before `ip netns exec` (which
    // remounts /sys for the network namespace), so that it shows the host's /sys; the
    // namespace ends with its last process, so the mount cannot outlive the test. The
    // exporter runs with no flags and listens on the default :9425, which cannot clash: the
    // network namespace is the test's own.
    let script = r#"
        root=$1 ns=$2
        shift 2
        mount --bind /sys "$root/host/sys"
        mount -o remount,bind,ro "$root/host/sys"
        status=0
        ip netns exec "$ns" unshare --pid --fork chroot --userspec=65534:65534 "$root" "$@" || status=$?
        umount "$root/host/sys"
        exit "$status"
    "#;
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-ec",
            script,
            "sh",
        ])
        .arg(root)
        .arg(&ns.name)
        .args(program)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let guard = KillTree(child.id());

    let body = scrape_default_port(&ns, &format!("a scrape of the {arch} image"))?;
    assert_eq!(status_names(&body), host_interfaces()?, "{arch}: {body}");
    assert!(!body.contains("nsonly"), "{arch}: {body}");
    eprintln!(
        "{arch} image as PID 1, scrape:\n{}",
        body.lines()
            .filter(|l| l.starts_with("interface_status"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // PID 1 of the new PID namespace is the process the root started: the exporter, or qemu
    // running it.
    let pid1 = wait_for("PID 1 of the container", DEADLINE, || {
        descendants(child.id()).into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1"))
            })
        })
    })?;
    let status = std::fs::read_to_string(format!("/proc/{pid1}/status"))?;
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "65534", "65534", "65534", "65534"],
        "{arch}: {status}"
    );

    let (code, took) = stop("-TERM", pid1, &mut child)?;
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().ok_or("stderr")?, &mut log)?;
    eprintln!("{arch} image: PID 1 exited {took:?} after SIGTERM with {code}\n{log}");
    assert!(took < STOP_LIMIT, "{arch}: took {took:?} to stop");
    assert!(code.success(), "{arch}: {code}\n{log}");
    assert!(log.contains("sysfs=/host/sys"), "{arch}: {log}");
    assert!(log.contains("signal=SIGTERM"), "{arch}: {log}");
    drop(guard);
    Ok(())
}

#[test]
fn image_builds_for_amd64_and_arm64_and_runs_as_pid_1() -> Result {
    if Command::new("podman").arg("--version").output().is_err() {
        return Err(
            "podman is missing: scripts/test.sh installs it (Debian package podman)".into(),
        );
    }
    let dir = TempDir::new()?;
    let layout = Layout(dir.0.join("oci"));
    let name = unique("ie-image-");
    let version = env!("CARGO_PKG_VERSION");
    let images = ImageList {
        list: format!("{name}:{version}"),
    };
    let out = run(Command::new(repo().join("scripts/build-image.sh"))
        .args(["--name", &name, "--push"])
        .arg(format!("oci:{}", layout.0.display())))?;
    eprintln!("{out}");

    // Both architectures are in the list podman keeps, and in the layout it pushed.
    let (text, list) = images.inspect()?;
    eprintln!("podman manifest inspect {}:\n{text}", images.list);
    let mut arches: Vec<&str> = list
        .get("manifests")
        .arr()
        .iter()
        .filter_map(|m| m.get("platform").get("architecture").str())
        .collect();
    arches.sort();
    assert_eq!(arches, ["amd64", "arm64"], "{text}");
    for (arch, _, _) in PLATFORMS {
        assert!(
            out.contains(&format!("{name}:{version} linux/{arch}: image ")),
            "no size printed for {arch}:\n{out}"
        );
    }

    let revision = run(Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["rev-parse", "HEAD"]))
    .map(|r| r.trim().to_owned())
    .unwrap_or_default();
    let manifests = layout.manifests()?;
    assert_eq!(manifests.len(), 2, "{manifests:?}");
    for (arch, target, machine) in PLATFORMS {
        let (_, manifest) = manifests
            .iter()
            .find(|(a, _)| a == arch)
            .ok_or(format!("no {arch} image in the layout"))?;
        let config = layout.json(manifest.get("config").get("digest").str().ok_or("config")?)?;
        assert_eq!(config.get("architecture").str(), Some(arch));
        assert_eq!(config.get("os").str(), Some("linux"));
        let c = config.get("config");
        assert_eq!(c.get("User").str(), Some("65534:65534"), "{arch}: {c:?}");
        assert_eq!(c.get("ExposedPorts").keys(), ["9425/tcp"], "{arch}: {c:?}");
        assert_eq!(
            c.get("Entrypoint"),
            &Json::Arr(vec![Json::Str("/interfaces_exporter".into())]),
            "{arch}: {c:?}"
        );
        assert_eq!(c.get("Cmd"), &Json::Null, "{arch}: {c:?}");

        let labels = c.get("Labels");
        let label = |key: &str| labels.get(&format!("org.opencontainers.image.{key}")).str();
        assert_eq!(label("title"), Some(env!("CARGO_PKG_NAME")), "{labels:?}");
        assert_eq!(label("version"), Some(version), "{labels:?}");
        assert_eq!(label("description"), Some(env!("CARGO_PKG_DESCRIPTION")));
        assert_eq!(label("licenses"), Some(env!("CARGO_PKG_LICENSE")));
        assert_eq!(label("revision"), Some(revision.as_str()), "{labels:?}");
        // RFC 3339 in UTC, as the OCI annotation asks: 2026-11-29T03:50:29Z.
        let created = label("created").unwrap_or("");
        assert!(
            created.len() == 20 && created.as_bytes()[10] == b'T' && created.ends_with('Z'),
            "created: {created:?}"
        );
        for key in labels.keys() {
            let value = labels.get(key).str().unwrap_or("");
            assert!(!value.contains("example."), "placeholder in {key}: {value}");
        }

        // The layers, applied in order, make a root file system holding the one binary.
        let root = dir.0.join(format!("root-{arch}"));
        std::fs::create_dir(&root)?;
        run(Command::new("chmod").arg("755").arg(&root))?;
        let mut compressed = 0;
        for layer in manifest.get("layers").arr() {
            let digest = layer.get("digest").str().ok_or("layer digest")?;
            compressed += std::fs::metadata(layout.blob_path(digest)?)?.len();
            // GNU tar reads gzip-compressed and plain layers alike.
            run(Command::new("tar")
                .arg("-xf")
                .arg(layout.blob_path(digest)?)
                .arg("-C")
                .arg(&root))?;
        }
        assert_eq!(tree(&root)?, ["interfaces_exporter"], "{arch}");
        let bin = root.join("interfaces_exporter");
        // ET_DYN: the binary is a static-pie, loaded at a random address.
        assert_eq!(elf_type_and_machine(&bin)?, (3, machine), "{arch}");
        let built = repo()
            .join("target")
            .join(target)
            .join("release/interfaces_exporter");
        assert!(
            std::fs::read(&bin)? == std::fs::read(&built)?,
            "{arch}: not {built:?}"
        );
        eprintln!(
            "{arch} image: {} bytes of binary, {compressed} bytes of compressed layers",
            std::fs::metadata(&bin)?.len()
        );

        if arch == "arm64" {
            let qemu = root.join("qemu-aarch64-static");
            std::fs::copy("/usr/bin/qemu-aarch64-static", &qemu).map_err(|e| {
                format!("/usr/bin/qemu-aarch64-static (Debian package qemu-user-static): {e}")
            })?;
            run(Command::new("chmod").arg("755").arg(&qemu))?;
            run_as_pid_1(
                arch,
                &root,
                &["/qemu-aarch64-static", "/interfaces_exporter"],
            )?;
        } else {
            run_as_pid_1(arch, &root, &["/interfaces_exporter"])?;
        }
    }
    drop(images);
    Ok(())
}
