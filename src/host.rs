//! Narrow interfaces to the outside world: files, processes, CRI and the etcd
//! tools. Each is small enough to read in one sitting and is exercised for
//! real in tests; every call that waits on something is bounded in time.

pub mod age;
pub mod cleanup;
pub mod cri;
pub mod dirwatch;
pub mod etcd;
pub mod etcd_server;
pub mod etcdutl;
pub mod fs;
pub mod fsinfo;
pub mod http;
pub mod proc;
pub mod rt;
pub mod s3;
pub mod ssh;
pub mod tarball;
pub mod zstd;
