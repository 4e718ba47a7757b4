//! The fleet file a fleet restore reads (`--nodes-file`, `--nodes`): the
//! control-plane nodes as ssh reaches them. It lives in `node` so the drill,
//! beside `restore`, writes the same file; named here for the restore.

pub use crate::node::nodes_file::{FleetNode, NodesFile};
