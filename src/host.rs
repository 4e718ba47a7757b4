//! Narrow interfaces to the outside world: filesystems and the etcd tools.
//! Each is small enough to read in one sitting and is exercised for real in tests.

pub mod cri;
pub mod etcd;
pub mod etcdutl;
pub mod fsinfo;
