//! The drill: a kubeadm control-plane node in a box, with a real etcd, real
//! TLS and a real CRI runtime, to rehearse a restore without a cluster.

pub mod broken;
pub mod containerd;
pub mod down;
pub mod kubelet;
pub mod layout;
pub mod oci;
pub mod pki;
pub mod practice;
pub mod process_runtime;
pub mod scenario;
pub mod seed;
pub mod sshd;
pub mod stand_in;
pub mod state;
pub mod up;
