//! Where a Kubernetes object lives, read from its etcd key.
//!
//! The API server stores objects as `/registry/<resource>/<namespace>/<name>` and cluster-scoped
//! ones as `/registry/<resource>/<name>`. API groups other than the core and the built-in ones
//! (CRDs, aggregated APIs) add their group: `/registry/<group>/<resource>/...`. Services are kept
//! under `/registry/services/specs/` and `/registry/services/endpoints/`.

/// Resources the API server stores without a namespace (`/registry/<resource>/<name>`).
/// `minions` is how nodes are stored; `ranges` holds the service IP and port allocators.
const CLUSTER_SCOPED: &[&str] = &[
    "apiservices",
    "certificatesigningrequests",
    "clusterrolebindings",
    "clusterroles",
    "clustertrustbundles",
    "csidrivers",
    "csinodes",
    "customresourcedefinitions",
    "deviceclasses",
    "flowschemas",
    "ingressclasses",
    "ipaddresses",
    "masterleases",
    "minions",
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
    "mutatingwebhookconfigurations",
    "namespaces",
    "nodes",
    "persistentvolumes",
    "podsecuritypolicy",
    "priorityclasses",
    "prioritylevelconfigurations",
    "ranges",
    "resourceslices",
    "runtimeclasses",
    "servicecidrs",
    "storageclasses",
    "storageversionmigrations",
    "storageversions",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "validatingwebhookconfigurations",
    "volumeattachments",
    "volumeattributesclasses",
];

/// The resource name used for keys outside `/registry/`.
pub const OTHER: &str = "(other)";

/// Where a key puts its object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Placement {
    /// `pods`, `services/specs`, `apiregistration.k8s.io/apiservices`, or `(other)` for keys
    /// outside `/registry/`.
    pub resource: String,
    /// The namespace; `None` for cluster-scoped objects and keys outside `/registry/`.
    pub namespace: Option<String>,
}

/// Reads the resource and namespace from an etcd key written by the Kubernetes API server.
pub fn classify(key: &[u8]) -> Placement {
    let Some(rest) = key.strip_prefix(b"/registry/") else {
        return Placement {
            resource: OTHER.into(),
            namespace: None,
        };
    };
    let segs: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    let first = segs[0];
    let grouped = first.contains(&b'.')
        || (first == b"services" && matches!(segs.get(1), Some(&(b"specs" | b"endpoints"))));
    let n = if grouped && segs.len() > 1 { 2 } else { 1 };
    let resource = segs[..n]
        .iter()
        .map(|s| String::from_utf8_lossy(s))
        .collect::<Vec<_>>()
        .join("/");
    let plural = segs[n - 1];
    let remainder = &segs[n..];
    let cluster = CLUSTER_SCOPED.iter().any(|c| c.as_bytes() == plural);
    let namespace =
        (!cluster && remainder.len() >= 2).then(|| String::from_utf8_lossy(remainder[0]).into_owned());
    Placement { resource, namespace }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(key: &str) -> (String, Option<String>) {
        let p = classify(key.as_bytes());
        (p.resource, p.namespace)
    }

    fn ns(s: &str) -> Option<String> {
        (!s.is_empty()).then(|| s.to_string())
    }

    /// Namespaced, cluster-scoped, grouped, service and foreign keys land where kubectl shows them.
    #[test]
    fn classifies_kubernetes_keys() {
        assert_eq!(
            at("/registry/pods/kube-system/etcd-0"),
            ("pods".into(), ns("kube-system"))
        );
        assert_eq!(at("/registry/namespaces/default"), ("namespaces".into(), None));
        assert_eq!(at("/registry/minions/node-1"), ("minions".into(), None));
        assert_eq!(at("/registry/clusterroles/admin"), ("clusterroles".into(), None));
        assert_eq!(at("/registry/ranges/serviceips"), ("ranges".into(), None));
        assert_eq!(
            at("/registry/services/specs/default/kubernetes"),
            ("services/specs".into(), ns("default"))
        );
        assert_eq!(
            at("/registry/services/endpoints/default/kubernetes"),
            ("services/endpoints".into(), ns("default"))
        );
        assert_eq!(
            at("/registry/apiregistration.k8s.io/apiservices/v1.apps"),
            ("apiregistration.k8s.io/apiservices".into(), None)
        );
        assert_eq!(
            at("/registry/apiextensions.k8s.io/customresourcedefinitions/foos.example.com"),
            ("apiextensions.k8s.io/customresourcedefinitions".into(), None)
        );
        assert_eq!(
            at("/registry/monitoring.coreos.com/prometheuses/monitoring/k8s"),
            ("monitoring.coreos.com/prometheuses".into(), ns("monitoring"))
        );
        assert_eq!(
            at("/registry/crd.projectcalico.org/ippools/default-ipv4"),
            ("crd.projectcalico.org/ippools".into(), None)
        );
        assert_eq!(at("/large/1"), (OTHER.into(), None));
        assert_eq!(at("/registry/"), (String::new(), None));
    }
}
