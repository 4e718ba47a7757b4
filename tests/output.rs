//! What the tool prints, read back by the programs an operator pastes it
//! into: printed commands by a POSIX shell, the bash completion by bash, and
//! `-w yaml` by a YAML 1.1 reader (PyYAML, as kubectl's reads it).

use etcd_rescue::restore::command::{Command, quote};
use serde_json::{Value, json};

use crate::support::bin;

const TRICKY: &[&str] = &[
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "N",
    "Yes",
    "TRUE",
    "false",
    "null",
    "Null",
    "~",
    "",
    "1_000",
    "1:20",
    "190:20:30.15",
    "=",
    "<<",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "0x1F",
    "0b101",
    "0o17",
    "012",
    "+1",
    "-1",
    "1e3",
    "1.5",
    ".5",
    ".inf",
    "-.Inf",
    ".NaN",
    " lead",
    "trail ",
    "a: b",
    "#x",
    "a #b",
    "key:",
    "-",
    "- x",
    "? x",
    "[x]",
    "{x}",
    "a,b",
    "*ref",
    "&anchor",
    "!tag",
    "|",
    ">",
    "'q'",
    "\"d\"",
    "%x",
    "@x",
    "`x`",
    "multi\nline",
    "multi\nline\n",
    "multi\n\nline\n\n",
    " lead\nline",
    "tab\there",
    "ctl\u{1}x",
    "bell\u{7}",
    "nel\u{85}x",
    "ls\u{2028}x",
    "it's",
    "10Gi",
    "v1",
    "1.2.3",
    "app.kubernetes.io/name",
    "http://x:80/y",
    "100m",
    "0",
    "e",
    "inf",
    "nan",
    "ünïcode",
    "spaces  inside",
    "line\n  indented\n",
    "\n  a\nb",
    "\n\nx\n",
    "\n\tt\nu",
];

/// Every printed command survives a POSIX shell word for word, whatever its paths hold.
#[test]
fn commands_are_quoted_for_a_shell() {
    let hostile = [
        "/tmp/a b/root",
        "/x;rm -rf /",
        "it's",
        "$(reboot)",
        "`id`",
        "a\nb",
        "",
        "plain/path-1.db",
    ];
    let cmd = Command::rescue(hostile.iter().copied());
    let script = format!("for w in {cmd}; do printf '%s\\0' \"$w\"; done");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let words: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let want: Vec<String> = std::iter::once("etcd-rescue")
        .chain(hostile.iter().copied().filter(|w| !w.is_empty()))
        .map(String::from)
        .collect();
    assert_eq!(words, want, "{cmd}");
    assert_eq!(quote("plain/path-1.db"), "plain/path-1.db");
    assert_eq!(quote(""), "''");
}

/// Bash completes subcommands, flags and values below the top level too
/// (clap_complete alone does not for a program name with a `-`).
#[test]
fn bash_completes_below_the_top_level() {
    let out = bin().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // Sourced from a file: the script outgrows what one argument (`bash -c`) may hold (128 KiB).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etcd-rescue.bash");
    std::fs::write(&file, &out.stdout).unwrap();
    let script = format!(". {}", file.display());
    let complete = |words: &str| {
        let out = std::process::Command::new("bash")
            .args(["--norc", "--noprofile", "-c"])
            .arg(format!(
                "{script}\ncomplete -p etcd-rescue >/dev/null || exit 9\n\
                 COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
                 _etcd_rescue etcd-rescue \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
                 printf '%s\\n' \"${{COMPREPLY[@]}}\""
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{words}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(complete("etcd-rescue ''").lines().any(|l| l == "restore"));
    assert!(complete("etcd-rescue snapshot ''").lines().any(|l| l == "status"));
    assert!(
        complete("etcd-rescue restore --sn")
            .lines()
            .any(|l| l == "--snapshot")
    );
    assert!(complete("etcd-rescue node -w ''").lines().any(|l| l == "json"));
}

/// Every tricky string, as a value, a key and inside lists and maps,
/// read back by PyYAML (a YAML 1.1 reader, like kubectl's), equals the
/// JSON it came from.
#[test]
fn yaml_1_1_reads_back_the_same_json() {
    let mut obj = serde_json::Map::new();
    for (i, s) in TRICKY.iter().enumerate() {
        obj.insert((*s).to_string(), json!(s));
        obj.insert(format!("k{i}"), json!({"in": [s, {"deep": s}], "n": i}));
    }
    obj.insert("numbers".into(), json!([0, -1, 1.5, 1e300, i64::MIN, u64::MAX]));
    obj.insert("bools".into(), json!([true, false, null]));
    let v = Value::Object(obj);
    let y = etcd_rescue::yaml::to_string(&v);
    let script = "import sys, json, yaml\n\
                  print(json.dumps(yaml.load(sys.stdin.read(), Loader=yaml.SafeLoader)))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), y.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'yaml'"),
        "PyYAML is needed for this test: apt-get install python3-yaml (make setup does)"
    );
    assert!(out.status.success(), "PyYAML could not read it: {err}\n{y}");
    let back: Value = serde_json::from_slice(&out.stdout).unwrap();
    if let (Value::Object(a), Value::Object(b)) = (&back, &v) {
        for (k, want) in b {
            assert_eq!(a.get(k), Some(want), "key {k:?} read back differently from:\n{y}");
        }
    }
    assert_eq!(back, v);
}
