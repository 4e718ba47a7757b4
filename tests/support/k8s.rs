//! Kubernetes objects as the API server stores them in etcd, built here from
//! the published `generated.proto` layouts (k8s.io/api core/v1,
//! k8s.io/apimachinery meta/v1 and runtime), independently of the decoder's
//! own tables: `k8s\0` + `runtime.Unknown{typeMeta{apiVersion, kind}, raw}`.

/// A protobuf message being written.
#[derive(Default, Clone)]
pub struct Pb(pub Vec<u8>);

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap() | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap());
}

impl Pb {
    pub fn new() -> Pb {
        Pb::default()
    }
    /// A length-delimited field (string, bytes, message).
    pub fn bytes(mut self, num: u64, b: &[u8]) -> Pb {
        varint(num << 3 | 2, &mut self.0);
        varint(b.len() as u64, &mut self.0);
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(self, num: u64, s: &str) -> Pb {
        self.bytes(num, s.as_bytes())
    }
    pub fn msg(self, num: u64, m: &Pb) -> Pb {
        self.bytes(num, &m.0)
    }
    pub fn int(mut self, num: u64, v: i64) -> Pb {
        varint(num << 3, &mut self.0);
        varint(v.cast_unsigned(), &mut self.0);
        self
    }
    /// A map entry (key 1, value 2).
    pub fn entry(self, num: u64, k: &str, v: &[u8]) -> Pb {
        let e = Pb::new().str(1, k).bytes(2, v);
        self.msg(num, &e)
    }
}

/// The stored form of `raw` as `apiVersion`/`kind`.
pub fn envelope(api_version: &str, kind: &str, raw: &Pb) -> Vec<u8> {
    let tm = Pb::new().str(1, api_version).str(2, kind);
    let u = Pb::new().msg(1, &tm).msg(2, raw).str(3, "").str(4, "");
    let mut out = b"k8s\x00".to_vec();
    out.extend(u.0);
    out
}

/// `meta.v1.ObjectMeta` as the API server writes it (empty strings included).
pub fn meta(name: &str, namespace: &str, uid: &str) -> Pb {
    let created = Pb::new().int(1, 1_767_225_600).int(2, 0); // 2026-01-01T00:00:00Z
    Pb::new()
        .str(1, name)
        .str(2, "")
        .str(3, namespace)
        .str(4, "")
        .str(5, uid)
        .str(6, "")
        .int(7, 1)
        .msg(8, &created)
}

/// A Pod: a container `web` (nginx, port 80) on node cp1, Running, owned by a ReplicaSet.
pub fn pod() -> Vec<u8> {
    let owner = Pb::new()
        .str(1, "ReplicaSet")
        .str(3, "web-7d4b9")
        .str(4, "rs-uid-1")
        .str(5, "apps/v1")
        .int(6, 1);
    let m = meta("web", "prod", "pod-uid-1")
        .entry(11, "app", b"web")
        .entry(12, "note", b"restored from etcd")
        .msg(13, &owner)
        .str(14, "example.com/keep");
    let port = Pb::new().str(1, "http").int(2, 0).int(3, 80).str(4, "TCP");
    let container = Pb::new().str(1, "web").str(2, "nginx:1.27").msg(6, &port);
    let spec = Pb::new().msg(2, &container).str(3, "Always").str(10, "cp1");
    // As the API server writes it: zero and false on the wire too.
    let terminated = Pb::new().int(1, 0).int(2, 0).str(3, "Completed").str(4, "");
    let state = Pb::new().msg(3, &terminated);
    let cstatus = Pb::new()
        .str(1, "web")
        .msg(2, &state)
        .int(4, 0)
        .int(5, 0)
        .str(6, "nginx:1.27")
        .str(7, "");
    let status = Pb::new().str(1, "Running").str(6, "10.244.0.7").msg(8, &cstatus);
    envelope("v1", "Pod", &Pb::new().msg(1, &m).msg(2, &spec).msg(3, &status))
}

/// A Secret `db` with data password=hunter2, type Opaque.
pub fn secret() -> Vec<u8> {
    let m = meta("db", "prod", "secret-uid-1");
    envelope(
        "v1",
        "Secret",
        &Pb::new()
            .msg(1, &m)
            .entry(2, "password", b"hunter2")
            .str(3, "Opaque"),
    )
}

/// A ConfigMap `settings` with data mode=fast.
pub fn config_map() -> Vec<u8> {
    let m = meta("settings", "prod", "cm-uid-1");
    envelope("v1", "ConfigMap", &Pb::new().msg(1, &m).entry(2, "mode", b"fast"))
}

/// The Namespace `prod`, finalizer kubernetes, phase Active.
pub fn namespace() -> Vec<u8> {
    let m = meta("prod", "", "ns-uid-1");
    let spec = Pb::new().str(1, "kubernetes");
    let status = Pb::new().str(1, "Active");
    envelope(
        "v1",
        "Namespace",
        &Pb::new().msg(1, &m).msg(2, &spec).msg(3, &status),
    )
}

/// The encryption configuration kube-apiserver reads, with one aescbc key
/// named `key1` (then `identity`).
pub fn aescbc_config(secret: &[u8]) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: {}\n      - identity: {{}}\n",
        crate::support::etcd::b64(secret)
    )
}

/// The Secret `prod/db` (`password: hunter2`) as kube-apiserver stores it
/// encrypted with aescbc `key` under [`aescbc_config`]'s `key1`:
/// `k8s:enc:aescbc:v1:key1:`, the IV, then AES-256-CBC made by OpenSSL
/// (independently of the reader's own decryption).
pub fn aescbc_secret(key: &[u8]) -> Vec<u8> {
    let secret = envelope(
        "v1",
        "Secret",
        &Pb::new()
            .msg(1, &meta("db", "prod", "secret-uid-9"))
            .entry(2, "password", b"hunter2")
            .str(3, "Opaque"),
    );
    let iv = [7u8; 16];
    let mut openssl = std::process::Command::new("openssl")
        .args(["enc", "-aes-256-cbc", "-K"])
        .arg(etcd_rescue::hex::hex(key))
        .arg("-iv")
        .arg(etcd_rescue::hex::hex(&iv))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is needed for this test (apt-get install openssl)");
    std::io::Write::write_all(&mut openssl.stdin.take().unwrap(), &secret).unwrap();
    let sealed = openssl.wait_with_output().unwrap();
    assert!(sealed.status.success());
    let mut stored = b"k8s:enc:aescbc:v1:key1:".to_vec();
    stored.extend(iv);
    stored.extend(&sealed.stdout);
    stored
}
