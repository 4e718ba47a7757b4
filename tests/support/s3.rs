//! A real S3-compatible server on loopback for the upload tests: moto's
//! server (PyPI `moto[server]`, installed into `.tools/moto` by `make setup`),
//! started on a free port and stopped by its PID when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::project_dir;

/// A running moto server with one bucket.
pub struct S3 {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket made for the test.
    pub bucket: String,
    /// Where its log goes.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The variables the tool (and boto3) read for this server.
pub const CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "etcd-rescue-test"),
    ("AWS_SECRET_ACCESS_KEY", "etcd-rescue-test-secret"),
    ("AWS_REGION", "us-east-1"),
];

fn moto_dir() -> PathBuf {
    let d = project_dir().join(".tools/moto");
    assert!(
        d.join("moto/server.py").is_file(),
        "moto[server] is not installed in {}: run `make setup` (pip install --target .tools/moto 'moto[server]')",
        d.display()
    );
    d
}

impl S3 {
    /// Starts the server and makes `bucket`.
    pub fn start(bucket: &str) -> S3 {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("its address").port()
        };
        let log = dir.path().join("moto.log");
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .env("PYTHONPATH", moto_dir())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("moto.err")).expect("log"))
            .spawn()
            .expect("python3 runs moto.server");
        let s = S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_string(),
            log,
            _dir: dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s.boto(&format!("c.create_bucket(Bucket={bucket:?})"));
        s
    }

    /// Runs python with `c`, a boto3 S3 client of this server, bound; returns stdout.
    pub fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3\nc = boto3.client('s3', endpoint_url={:?})\n{code}\n",
            self.endpoint
        );
        let mut cmd = Command::new("python3");
        cmd.args(["-c", &script]).env("PYTHONPATH", moto_dir());
        for (k, v) in CREDENTIALS {
            cmd.env(k, v);
        }
        cmd.env("AWS_DEFAULT_REGION", "us-east-1");
        let out = super::run_bounded(&mut cmd, Duration::from_secs(60));
        assert!(out.status.success(), "boto3: {code}: {:?}", super::text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The keys in the bucket, sorted.
    pub fn keys(&self) -> Vec<String> {
        let out = self.boto(
            "for o in c.list_objects_v2(Bucket=BUCKET).get('Contents', []): print(o['Key'])"
                .replace("BUCKET", &format!("{:?}", self.bucket))
                .as_str(),
        );
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    }

    /// The object at `key`, as text.
    pub fn get(&self, key: &str) -> String {
        self.boto(&format!(
            "import sys\nsys.stdout.write(c.get_object(Bucket={:?}, Key={key:?})['Body'].read().decode())",
            self.bucket
        ))
    }

    /// Appends a space to the object at `key` (a new ETag, the same JSON).
    pub fn touch(&self, key: &str) {
        self.boto(&format!(
            "b = c.get_object(Bucket={b:?}, Key={key:?})['Body'].read()\nc.put_object(Bucket={b:?}, Key={key:?}, Body=b + b' ')",
            b = self.bucket
        ));
    }

    /// The environment for the tool: credentials and this endpoint.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut v: Vec<(&'static str, String)> =
            CREDENTIALS.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        v.push(("AWS_ENDPOINT_URL", self.endpoint.clone()));
        v
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        // By its PID, never by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
