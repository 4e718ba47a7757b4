//! A CRI (`runtime.v1`) client over a unix socket: what kubelet sees of its
//! container runtime. The restore waits through it until etcd and the other
//! control-plane pods are really gone, and stops them through it when told to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The generated CRI messages, client and server.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("runtime.v1");
}

use pb::runtime_service_client::RuntimeServiceClient;

/// The label kubelet puts the pod name under.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// The label kubelet puts the pod namespace under.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The label kubelet puts the pod UID under.
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// The label kubelet puts the container name under.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Where a pod came from; `file` for static pods.
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";

/// A connected CRI client.
#[derive(Debug, Clone)]
pub struct Cri {
    client: RuntimeServiceClient<Channel>,
    socket: PathBuf,
}

impl Cri {
    /// Connects to the runtime at `socket` (a path on this machine), waiting at most `timeout`.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Cri> {
        let path = socket.to_path_buf();
        let endpoint = Endpoint::from_static("http://cri.invalid")
            .connect_timeout(timeout)
            .timeout(Duration::from_secs(30));
        let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?)) }
        }));
        let channel = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| anyhow::anyhow!("timed out after {timeout:?}"))
            .and_then(|r| r.map_err(anyhow::Error::from))
            .with_context(|| format!("connecting to the CRI socket {}", socket.display()))?;
        Ok(Cri {
            client: RuntimeServiceClient::new(channel),
            socket: socket.to_path_buf(),
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn ctx(&self, what: &str) -> String {
        format!("CRI {what} on {}", self.socket.display())
    }

    /// The runtime's name and version.
    pub async fn version(&mut self) -> Result<pb::VersionResponse> {
        let ctx = self.ctx("Version");
        Ok(self
            .client
            .version(pb::VersionRequest { version: "v1".into() })
            .await
            .context(ctx)?
            .into_inner())
    }

    /// Pod sandboxes whose labels include all of `labels`.
    pub async fn pods(&mut self, labels: &[(&str, &str)]) -> Result<Vec<pb::PodSandbox>> {
        let ctx = self.ctx("ListPodSandbox");
        let filter = pb::PodSandboxFilter {
            label_selector: to_map(labels),
            ..Default::default()
        };
        Ok(self
            .client
            .list_pod_sandbox(pb::ListPodSandboxRequest { filter: Some(filter) })
            .await
            .context(ctx)?
            .into_inner()
            .items)
    }

    /// Containers whose labels include all of `labels`, optionally only in `state`.
    pub async fn containers(
        &mut self,
        labels: &[(&str, &str)],
        state: Option<pb::ContainerState>,
    ) -> Result<Vec<pb::Container>> {
        let ctx = self.ctx("ListContainers");
        let filter = pb::ContainerFilter {
            label_selector: to_map(labels),
            state: state.map(|s| pb::ContainerStateValue { state: s as i32 }),
            ..Default::default()
        };
        Ok(self
            .client
            .list_containers(pb::ListContainersRequest { filter: Some(filter) })
            .await
            .context(ctx)?
            .into_inner()
            .containers)
    }

    /// The status of one container.
    pub async fn container_status(&mut self, id: &str) -> Result<pb::ContainerStatus> {
        let ctx = self.ctx(&format!("ContainerStatus {id}"));
        self.client
            .container_status(pb::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .context(ctx.clone())?
            .into_inner()
            .status
            .with_context(|| format!("{ctx}: no status in the answer"))
    }

    /// The host PID of a running container's main process, from the verbose
    /// status (`info["info"]` is JSON with `pid`, as containerd and crictl show it).
    pub async fn container_pid(&mut self, id: &str) -> Result<Option<i32>> {
        let ctx = self.ctx(&format!("ContainerStatus {id} (verbose)"));
        let info = self
            .client
            .container_status(pb::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await
            .context(ctx)?
            .into_inner()
            .info;
        Ok(info
            .get("info")
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .and_then(|v| v.get("pid").and_then(serde_json::Value::as_i64))
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0))
    }

    /// Stops a container: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop_container(&mut self, id: &str, grace: Duration) -> Result<()> {
        let ctx = self.ctx(&format!("StopContainer {id}"));
        let timeout = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
        self.client
            .stop_container(pb::StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .context(ctx)?;
        Ok(())
    }

    /// Stops a pod sandbox and every container in it.
    pub async fn stop_pod(&mut self, id: &str) -> Result<()> {
        let ctx = self.ctx(&format!("StopPodSandbox {id}"));
        self.client
            .stop_pod_sandbox(pb::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .context(ctx)?;
        Ok(())
    }

    /// Removes a pod sandbox and its containers.
    pub async fn remove_pod(&mut self, id: &str) -> Result<()> {
        let ctx = self.ctx(&format!("RemovePodSandbox {id}"));
        self.client
            .remove_pod_sandbox(pb::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .context(ctx)?;
        Ok(())
    }

    /// Creates and starts a pod sandbox, returning its ID.
    pub async fn run_pod(&mut self, config: pb::PodSandboxConfig) -> Result<String> {
        let ctx = self.ctx("RunPodSandbox");
        Ok(self
            .client
            .run_pod_sandbox(pb::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .context(ctx)?
            .into_inner()
            .pod_sandbox_id)
    }

    /// Creates a container in a sandbox, returning its ID.
    pub async fn create_container(
        &mut self,
        sandbox: &str,
        config: pb::ContainerConfig,
        sandbox_config: pb::PodSandboxConfig,
    ) -> Result<String> {
        let ctx = self.ctx("CreateContainer");
        Ok(self
            .client
            .create_container(pb::CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .context(ctx)?
            .into_inner()
            .container_id)
    }

    /// Starts a created container.
    pub async fn start_container(&mut self, id: &str) -> Result<()> {
        let ctx = self.ctx(&format!("StartContainer {id}"));
        self.client
            .start_container(pb::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .context(ctx)?;
        Ok(())
    }

    /// Removes a container (killing it first if it still runs).
    pub async fn remove_container(&mut self, id: &str) -> Result<()> {
        let ctx = self.ctx(&format!("RemoveContainer {id}"));
        self.client
            .remove_container(pb::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .context(ctx)?;
        Ok(())
    }
}

fn to_map(labels: &[(&str, &str)]) -> HashMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// A container state as kubectl and crictl print it.
pub fn state_name(state: i32) -> &'static str {
    match pb::ContainerState::try_from(state) {
        Ok(pb::ContainerState::ContainerCreated) => "Created",
        Ok(pb::ContainerState::ContainerRunning) => "Running",
        Ok(pb::ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}
