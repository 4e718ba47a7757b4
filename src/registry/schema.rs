//! Field tables of the Kubernetes protobuf messages stored in etcd, from the
//! published `generated.proto` files of k8s.io/api and k8s.io/apimachinery:
//! each field's number, JSON name and how its bytes read. A field not in a
//! table is still shown, by number; a message without a table is read
//! generically ([`Ty::Any`]).

/// How a field's bytes read.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// A string.
    Str,
    /// Bytes (base64 in JSON, as the API shows them).
    Bytes,
    /// A varint integer (int32 or int64).
    Int,
    /// A bool.
    Bool,
    /// A message with a table.
    Msg(&'static Msg),
    /// A message without a table: read generically.
    Any,
    /// `meta.v1.Time`: seconds and nanos, shown as RFC 3339 to the second.
    Time,
    /// `meta.v1.MicroTime`: shown as RFC 3339 with microseconds.
    MicroTime,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `meta.v1.FieldsV1`: raw JSON.
    FieldsV1,
    /// `map<string,string>`.
    MapStr,
    /// `map<string,bytes>`.
    MapBytes,
    /// `map<string, message>` with a table.
    MapMsg(&'static Msg),
}

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Its number.
    pub num: u32,
    /// Its JSON name.
    pub name: &'static str,
    /// How it reads.
    pub ty: Ty,
    /// A repeated field (a JSON list).
    pub repeated: bool,
}

/// A message's fields.
#[derive(Debug)]
pub struct Msg {
    /// The message's name, e.g. `core.v1.Pod`.
    pub name: &'static str,
    /// Its fields, by number.
    pub fields: &'static [Field],
}

impl Msg {
    /// The field numbered `num`.
    pub fn field(&self, num: u32) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.num == num)
    }
}

const fn one(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        repeated: false,
    }
}

const fn many(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        repeated: true,
    }
}

/// `runtime.Unknown`.
///
/// What follows the `k8s\0` magic of an object stored as protobuf: `raw` is
/// the object itself. Proto names: `typeMeta` is inlined in JSON, `raw` has
/// no JSON name.
pub static UNKNOWN: Msg = Msg {
    name: "runtime.Unknown",
    fields: &[
        one(1, "typeMeta", Ty::Msg(&TYPE_META)),
        one(2, "raw", Ty::Bytes),
        one(3, "contentEncoding", Ty::Str),
        one(4, "contentType", Ty::Str),
    ],
};

/// `runtime.TypeMeta`.
pub static TYPE_META: Msg = Msg {
    name: "runtime.TypeMeta",
    fields: &[one(1, "apiVersion", Ty::Str), one(2, "kind", Ty::Str)],
};

/// `meta.v1.ObjectMeta`.
pub static OBJECT_META: Msg = Msg {
    name: "meta.v1.ObjectMeta",
    fields: &[
        one(1, "name", Ty::Str),
        one(2, "generateName", Ty::Str),
        one(3, "namespace", Ty::Str),
        one(4, "selfLink", Ty::Str),
        one(5, "uid", Ty::Str),
        one(6, "resourceVersion", Ty::Str),
        one(7, "generation", Ty::Int),
        one(8, "creationTimestamp", Ty::Time),
        one(9, "deletionTimestamp", Ty::Time),
        one(10, "deletionGracePeriodSeconds", Ty::Int),
        one(11, "labels", Ty::MapStr),
        one(12, "annotations", Ty::MapStr),
        many(13, "ownerReferences", Ty::Msg(&OWNER_REFERENCE)),
        many(14, "finalizers", Ty::Str),
        many(17, "managedFields", Ty::Msg(&MANAGED_FIELDS_ENTRY)),
    ],
};

/// `meta.v1.OwnerReference`.
pub static OWNER_REFERENCE: Msg = Msg {
    name: "meta.v1.OwnerReference",
    fields: &[
        one(1, "kind", Ty::Str),
        one(3, "name", Ty::Str),
        one(4, "uid", Ty::Str),
        one(5, "apiVersion", Ty::Str),
        one(6, "controller", Ty::Bool),
        one(7, "blockOwnerDeletion", Ty::Bool),
    ],
};

/// `meta.v1.Time`.
///
/// The wire form of [`Ty::Time`].
pub static TIME: Msg = Msg {
    name: "meta.v1.Time",
    fields: &[one(1, "seconds", Ty::Int), one(2, "nanos", Ty::Int)],
};

/// `meta.v1.MicroTime`.
///
/// The wire form of [`Ty::MicroTime`].
pub static MICRO_TIME: Msg = Msg {
    name: "meta.v1.MicroTime",
    fields: &[one(1, "seconds", Ty::Int), one(2, "nanos", Ty::Int)],
};

/// `meta.v1.ManagedFieldsEntry`.
pub static MANAGED_FIELDS_ENTRY: Msg = Msg {
    name: "meta.v1.ManagedFieldsEntry",
    fields: &[
        one(1, "manager", Ty::Str),
        one(2, "operation", Ty::Str),
        one(3, "apiVersion", Ty::Str),
        one(4, "time", Ty::Time),
        one(6, "fieldsType", Ty::Str),
        one(7, "fieldsV1", Ty::FieldsV1),
        one(8, "subresource", Ty::Str),
    ],
};

/// `meta.v1.FieldsV1`.
///
/// The wire form of [`Ty::FieldsV1`]: `Raw` is the JSON itself.
pub static FIELDS_V1: Msg = Msg {
    name: "meta.v1.FieldsV1",
    fields: &[one(1, "Raw", Ty::Bytes)],
};

/// `meta.v1.LabelSelector`.
pub static LABEL_SELECTOR: Msg = Msg {
    name: "meta.v1.LabelSelector",
    fields: &[
        one(1, "matchLabels", Ty::MapStr),
        many(2, "matchExpressions", Ty::Msg(&LABEL_SELECTOR_REQUIREMENT)),
    ],
};

/// `meta.v1.LabelSelectorRequirement`.
pub static LABEL_SELECTOR_REQUIREMENT: Msg = Msg {
    name: "meta.v1.LabelSelectorRequirement",
    fields: &[
        one(1, "key", Ty::Str),
        one(2, "operator", Ty::Str),
        many(3, "values", Ty::Str),
    ],
};

/// `meta.v1.Condition`.
pub static CONDITION: Msg = Msg {
    name: "meta.v1.Condition",
    fields: &[
        one(1, "type", Ty::Str),
        one(2, "status", Ty::Str),
        one(3, "observedGeneration", Ty::Int),
        one(4, "lastTransitionTime", Ty::Time),
        one(5, "reason", Ty::Str),
        one(6, "message", Ty::Str),
    ],
};

/// `resource.Quantity`.
///
/// The wire form of [`Ty::Quantity`], and the value of a
/// `map<string, Quantity>` ([`Ty::MapMsg`]).
pub static QUANTITY: Msg = Msg {
    name: "resource.Quantity",
    fields: &[one(1, "string", Ty::Str)],
};

/// `intstr.IntOrString`.
///
/// The wire form of [`Ty::IntOrString`]: `type` 0 is `intVal`, 1 is `strVal`.
pub static INT_OR_STRING: Msg = Msg {
    name: "intstr.IntOrString",
    fields: &[
        one(1, "type", Ty::Int),
        one(2, "intVal", Ty::Int),
        one(3, "strVal", Ty::Str),
    ],
};

/// `core.v1.Pod`.
pub static POD: Msg = Msg {
    name: "core.v1.Pod",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "spec", Ty::Msg(&POD_SPEC)),
        one(3, "status", Ty::Msg(&POD_STATUS)),
    ],
};

/// `core.v1.PodSpec`.
pub static POD_SPEC: Msg = Msg {
    name: "core.v1.PodSpec",
    fields: &[
        many(1, "volumes", Ty::Msg(&VOLUME)),
        many(2, "containers", Ty::Msg(&CONTAINER)),
        one(3, "restartPolicy", Ty::Str),
        one(4, "terminationGracePeriodSeconds", Ty::Int),
        one(5, "activeDeadlineSeconds", Ty::Int),
        one(6, "dnsPolicy", Ty::Str),
        one(7, "nodeSelector", Ty::MapStr),
        one(8, "serviceAccountName", Ty::Str),
        one(9, "serviceAccount", Ty::Str),
        one(10, "nodeName", Ty::Str),
        one(11, "hostNetwork", Ty::Bool),
        one(12, "hostPID", Ty::Bool),
        one(13, "hostIPC", Ty::Bool),
        one(14, "securityContext", Ty::Any),
        many(15, "imagePullSecrets", Ty::Msg(&LOCAL_OBJECT_REFERENCE)),
        one(16, "hostname", Ty::Str),
        one(17, "subdomain", Ty::Str),
        one(18, "affinity", Ty::Any),
        one(19, "schedulerName", Ty::Str),
        many(20, "initContainers", Ty::Msg(&CONTAINER)),
        one(21, "automountServiceAccountToken", Ty::Bool),
        many(22, "tolerations", Ty::Msg(&TOLERATION)),
        many(23, "hostAliases", Ty::Any),
        one(24, "priorityClassName", Ty::Str),
        one(25, "priority", Ty::Int),
        one(26, "dnsConfig", Ty::Any),
        one(27, "shareProcessNamespace", Ty::Bool),
        many(28, "readinessGates", Ty::Any),
        one(29, "runtimeClassName", Ty::Str),
        one(30, "enableServiceLinks", Ty::Bool),
        one(31, "preemptionPolicy", Ty::Str),
        one(32, "overhead", Ty::MapMsg(&QUANTITY)),
        many(33, "topologySpreadConstraints", Ty::Any),
        many(34, "ephemeralContainers", Ty::Any),
        one(35, "setHostnameAsFQDN", Ty::Bool),
        one(36, "os", Ty::Any),
        one(37, "hostUsers", Ty::Bool),
        many(38, "schedulingGates", Ty::Any),
        many(39, "resourceClaims", Ty::Any),
        one(40, "resources", Ty::Msg(&RESOURCE_REQUIREMENTS)),
        one(41, "hostnameOverride", Ty::Str),
        one(43, "schedulingGroup", Ty::Any),
        many(44, "evictionResponders", Ty::Any),
    ],
};

/// `core.v1.PodStatus`.
pub static POD_STATUS: Msg = Msg {
    name: "core.v1.PodStatus",
    fields: &[
        one(1, "phase", Ty::Str),
        many(2, "conditions", Ty::Msg(&POD_CONDITION)),
        one(3, "message", Ty::Str),
        one(4, "reason", Ty::Str),
        one(5, "hostIP", Ty::Str),
        one(6, "podIP", Ty::Str),
        one(7, "startTime", Ty::Time),
        many(8, "containerStatuses", Ty::Msg(&CONTAINER_STATUS)),
        one(9, "qosClass", Ty::Str),
        many(10, "initContainerStatuses", Ty::Msg(&CONTAINER_STATUS)),
        one(11, "nominatedNodeName", Ty::Str),
        many(12, "podIPs", Ty::Msg(&POD_IP)),
        many(13, "ephemeralContainerStatuses", Ty::Msg(&CONTAINER_STATUS)),
        one(14, "resize", Ty::Str),
        many(15, "resourceClaimStatuses", Ty::Any),
        many(16, "hostIPs", Ty::Msg(&HOST_IP)),
        one(17, "observedGeneration", Ty::Int),
        one(18, "extendedResourceClaimStatus", Ty::Any),
        one(19, "allocatedResources", Ty::MapMsg(&QUANTITY)),
        one(20, "resources", Ty::Msg(&RESOURCE_REQUIREMENTS)),
        many(21, "nodeAllocatableResourceClaimStatuses", Ty::Any),
        many(22, "volumeHealth", Ty::Any),
    ],
};

/// `core.v1.PodTemplateSpec`.
pub static POD_TEMPLATE_SPEC: Msg = Msg {
    name: "core.v1.PodTemplateSpec",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "spec", Ty::Msg(&POD_SPEC)),
    ],
};

/// `core.v1.Container`.
pub static CONTAINER: Msg = Msg {
    name: "core.v1.Container",
    fields: &[
        one(1, "name", Ty::Str),
        one(2, "image", Ty::Str),
        many(3, "command", Ty::Str),
        many(4, "args", Ty::Str),
        one(5, "workingDir", Ty::Str),
        many(6, "ports", Ty::Msg(&CONTAINER_PORT)),
        many(7, "env", Ty::Msg(&ENV_VAR)),
        one(8, "resources", Ty::Msg(&RESOURCE_REQUIREMENTS)),
        many(9, "volumeMounts", Ty::Msg(&VOLUME_MOUNT)),
        one(10, "livenessProbe", Ty::Any),
        one(11, "readinessProbe", Ty::Any),
        one(12, "lifecycle", Ty::Any),
        one(13, "terminationMessagePath", Ty::Str),
        one(14, "imagePullPolicy", Ty::Str),
        one(15, "securityContext", Ty::Any),
        one(16, "stdin", Ty::Bool),
        one(17, "stdinOnce", Ty::Bool),
        one(18, "tty", Ty::Bool),
        many(19, "envFrom", Ty::Any),
        one(20, "terminationMessagePolicy", Ty::Str),
        many(21, "volumeDevices", Ty::Any),
        one(22, "startupProbe", Ty::Any),
        many(23, "resizePolicy", Ty::Any),
        one(24, "restartPolicy", Ty::Str),
        many(25, "restartPolicyRules", Ty::Any),
    ],
};

/// `core.v1.ContainerPort`.
pub static CONTAINER_PORT: Msg = Msg {
    name: "core.v1.ContainerPort",
    fields: &[
        one(1, "name", Ty::Str),
        one(2, "hostPort", Ty::Int),
        one(3, "containerPort", Ty::Int),
        one(4, "protocol", Ty::Str),
        one(5, "hostIP", Ty::Str),
    ],
};

/// `core.v1.EnvVar`.
pub static ENV_VAR: Msg = Msg {
    name: "core.v1.EnvVar",
    fields: &[
        one(1, "name", Ty::Str),
        one(2, "value", Ty::Str),
        one(3, "valueFrom", Ty::Msg(&ENV_VAR_SOURCE)),
    ],
};

/// `core.v1.EnvVarSource`.
pub static ENV_VAR_SOURCE: Msg = Msg {
    name: "core.v1.EnvVarSource",
    fields: &[
        one(1, "fieldRef", Ty::Any),
        one(2, "resourceFieldRef", Ty::Any),
        one(3, "configMapKeyRef", Ty::Any),
        one(4, "secretKeyRef", Ty::Any),
        one(5, "fileKeyRef", Ty::Any),
    ],
};

/// `core.v1.ResourceRequirements`.
pub static RESOURCE_REQUIREMENTS: Msg = Msg {
    name: "core.v1.ResourceRequirements",
    fields: &[
        one(1, "limits", Ty::MapMsg(&QUANTITY)),
        one(2, "requests", Ty::MapMsg(&QUANTITY)),
        many(3, "claims", Ty::Msg(&RESOURCE_CLAIM)),
    ],
};

/// `core.v1.ResourceClaim`.
pub static RESOURCE_CLAIM: Msg = Msg {
    name: "core.v1.ResourceClaim",
    fields: &[one(1, "name", Ty::Str), one(2, "request", Ty::Str)],
};

/// `core.v1.VolumeMount`.
pub static VOLUME_MOUNT: Msg = Msg {
    name: "core.v1.VolumeMount",
    fields: &[
        one(1, "name", Ty::Str),
        one(2, "readOnly", Ty::Bool),
        one(3, "mountPath", Ty::Str),
        one(4, "subPath", Ty::Str),
        one(5, "mountPropagation", Ty::Str),
        one(6, "subPathExpr", Ty::Str),
        one(7, "recursiveReadOnly", Ty::Str),
        many(8, "bindMountOptions", Ty::Str),
    ],
};

/// `core.v1.Volume`.
///
/// Field 2, the embedded `VolumeSource`, has no name: its fields are inlined.
pub static VOLUME: Msg = Msg {
    name: "core.v1.Volume",
    fields: &[one(1, "name", Ty::Str), one(2, "", Ty::Msg(&VOLUME_SOURCE))],
};

/// `core.v1.VolumeSource`.
pub static VOLUME_SOURCE: Msg = Msg {
    name: "core.v1.VolumeSource",
    fields: &[
        one(1, "hostPath", Ty::Any),
        one(2, "emptyDir", Ty::Any),
        one(3, "gcePersistentDisk", Ty::Any),
        one(4, "awsElasticBlockStore", Ty::Any),
        one(5, "gitRepo", Ty::Any),
        one(6, "secret", Ty::Any),
        one(7, "nfs", Ty::Any),
        one(8, "iscsi", Ty::Any),
        one(9, "glusterfs", Ty::Any),
        one(10, "persistentVolumeClaim", Ty::Any),
        one(11, "rbd", Ty::Any),
        one(12, "flexVolume", Ty::Any),
        one(13, "cinder", Ty::Any),
        one(14, "cephfs", Ty::Any),
        one(15, "flocker", Ty::Any),
        one(16, "downwardAPI", Ty::Any),
        one(17, "fc", Ty::Any),
        one(18, "azureFile", Ty::Any),
        one(19, "configMap", Ty::Any),
        one(20, "vsphereVolume", Ty::Any),
        one(21, "quobyte", Ty::Any),
        one(22, "azureDisk", Ty::Any),
        one(23, "photonPersistentDisk", Ty::Any),
        one(24, "portworxVolume", Ty::Any),
        one(25, "scaleIO", Ty::Any),
        one(26, "projected", Ty::Any),
        one(27, "storageos", Ty::Any),
        one(28, "csi", Ty::Any),
        one(29, "ephemeral", Ty::Any),
        one(30, "image", Ty::Any),
    ],
};

/// `core.v1.ContainerStatus`.
pub static CONTAINER_STATUS: Msg = Msg {
    name: "core.v1.ContainerStatus",
    fields: &[
        one(1, "name", Ty::Str),
        one(2, "state", Ty::Msg(&CONTAINER_STATE)),
        one(3, "lastState", Ty::Msg(&CONTAINER_STATE)),
        one(4, "ready", Ty::Bool),
        one(5, "restartCount", Ty::Int),
        one(6, "image", Ty::Str),
        one(7, "imageID", Ty::Str),
        one(8, "containerID", Ty::Str),
        one(9, "started", Ty::Bool),
        one(10, "allocatedResources", Ty::MapMsg(&QUANTITY)),
        one(11, "resources", Ty::Msg(&RESOURCE_REQUIREMENTS)),
        many(12, "volumeMounts", Ty::Any),
        one(13, "user", Ty::Any),
        many(14, "allocatedResourcesStatus", Ty::Any),
        one(15, "stopSignal", Ty::Str),
    ],
};

/// `core.v1.ContainerState`.
pub static CONTAINER_STATE: Msg = Msg {
    name: "core.v1.ContainerState",
    fields: &[
        one(1, "waiting", Ty::Msg(&CONTAINER_STATE_WAITING)),
        one(2, "running", Ty::Msg(&CONTAINER_STATE_RUNNING)),
        one(3, "terminated", Ty::Msg(&CONTAINER_STATE_TERMINATED)),
    ],
};

/// `core.v1.ContainerStateRunning`.
pub static CONTAINER_STATE_RUNNING: Msg = Msg {
    name: "core.v1.ContainerStateRunning",
    fields: &[one(1, "startedAt", Ty::Time)],
};

/// `core.v1.ContainerStateWaiting`.
pub static CONTAINER_STATE_WAITING: Msg = Msg {
    name: "core.v1.ContainerStateWaiting",
    fields: &[one(1, "reason", Ty::Str), one(2, "message", Ty::Str)],
};

/// `core.v1.ContainerStateTerminated`.
pub static CONTAINER_STATE_TERMINATED: Msg = Msg {
    name: "core.v1.ContainerStateTerminated",
    fields: &[
        one(1, "exitCode", Ty::Int),
        one(2, "signal", Ty::Int),
        one(3, "reason", Ty::Str),
        one(4, "message", Ty::Str),
        one(5, "startedAt", Ty::Time),
        one(6, "finishedAt", Ty::Time),
        one(7, "containerID", Ty::Str),
    ],
};

/// `core.v1.PodCondition`.
pub static POD_CONDITION: Msg = Msg {
    name: "core.v1.PodCondition",
    fields: &[
        one(1, "type", Ty::Str),
        one(2, "status", Ty::Str),
        one(3, "lastProbeTime", Ty::Time),
        one(4, "lastTransitionTime", Ty::Time),
        one(5, "reason", Ty::Str),
        one(6, "message", Ty::Str),
        one(7, "observedGeneration", Ty::Int),
    ],
};

/// `core.v1.PodIP`.
pub static POD_IP: Msg = Msg {
    name: "core.v1.PodIP",
    fields: &[one(1, "ip", Ty::Str)],
};

/// `core.v1.HostIP`.
pub static HOST_IP: Msg = Msg {
    name: "core.v1.HostIP",
    fields: &[one(1, "ip", Ty::Str)],
};

/// `core.v1.Toleration`.
pub static TOLERATION: Msg = Msg {
    name: "core.v1.Toleration",
    fields: &[
        one(1, "key", Ty::Str),
        one(2, "operator", Ty::Str),
        one(3, "value", Ty::Str),
        one(4, "effect", Ty::Str),
        one(5, "tolerationSeconds", Ty::Int),
    ],
};

/// `core.v1.Secret`.
pub static SECRET: Msg = Msg {
    name: "core.v1.Secret",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "data", Ty::MapBytes),
        one(3, "type", Ty::Str),
        one(4, "stringData", Ty::MapStr),
        one(5, "immutable", Ty::Bool),
    ],
};

/// `core.v1.ConfigMap`.
pub static CONFIG_MAP: Msg = Msg {
    name: "core.v1.ConfigMap",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "data", Ty::MapStr),
        one(3, "binaryData", Ty::MapBytes),
        one(4, "immutable", Ty::Bool),
    ],
};

/// `core.v1.Namespace`.
pub static NAMESPACE: Msg = Msg {
    name: "core.v1.Namespace",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "spec", Ty::Msg(&NAMESPACE_SPEC)),
        one(3, "status", Ty::Msg(&NAMESPACE_STATUS)),
    ],
};

/// `core.v1.NamespaceSpec`.
pub static NAMESPACE_SPEC: Msg = Msg {
    name: "core.v1.NamespaceSpec",
    fields: &[many(1, "finalizers", Ty::Str)],
};

/// `core.v1.NamespaceStatus`.
pub static NAMESPACE_STATUS: Msg = Msg {
    name: "core.v1.NamespaceStatus",
    fields: &[
        one(1, "phase", Ty::Str),
        many(2, "conditions", Ty::Msg(&NAMESPACE_CONDITION)),
    ],
};

/// `core.v1.NamespaceCondition`.
pub static NAMESPACE_CONDITION: Msg = Msg {
    name: "core.v1.NamespaceCondition",
    fields: &[
        one(1, "type", Ty::Str),
        one(2, "status", Ty::Str),
        one(4, "lastTransitionTime", Ty::Time),
        one(5, "reason", Ty::Str),
        one(6, "message", Ty::Str),
    ],
};

/// `core.v1.Service`.
pub static SERVICE: Msg = Msg {
    name: "core.v1.Service",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "spec", Ty::Msg(&SERVICE_SPEC)),
        one(3, "status", Ty::Msg(&SERVICE_STATUS)),
    ],
};

/// `core.v1.ServiceSpec`.
pub static SERVICE_SPEC: Msg = Msg {
    name: "core.v1.ServiceSpec",
    fields: &[
        many(1, "ports", Ty::Msg(&SERVICE_PORT)),
        one(2, "selector", Ty::MapStr),
        one(3, "clusterIP", Ty::Str),
        one(4, "type", Ty::Str),
        many(5, "externalIPs", Ty::Str),
        one(7, "sessionAffinity", Ty::Str),
        one(8, "loadBalancerIP", Ty::Str),
        many(9, "loadBalancerSourceRanges", Ty::Str),
        one(10, "externalName", Ty::Str),
        one(11, "externalTrafficPolicy", Ty::Str),
        one(12, "healthCheckNodePort", Ty::Int),
        one(13, "publishNotReadyAddresses", Ty::Bool),
        one(14, "sessionAffinityConfig", Ty::Any),
        one(17, "ipFamilyPolicy", Ty::Str),
        many(18, "clusterIPs", Ty::Str),
        many(19, "ipFamilies", Ty::Str),
        one(20, "allocateLoadBalancerNodePorts", Ty::Bool),
        one(21, "loadBalancerClass", Ty::Str),
        one(22, "internalTrafficPolicy", Ty::Str),
        one(23, "trafficDistribution", Ty::Str),
    ],
};

/// `core.v1.ServicePort`.
pub static SERVICE_PORT: Msg = Msg {
    name: "core.v1.ServicePort",
    fields: &[
        one(1, "name", Ty::Str),
        one(2, "protocol", Ty::Str),
        one(3, "port", Ty::Int),
        one(4, "targetPort", Ty::IntOrString),
        one(5, "nodePort", Ty::Int),
        one(6, "appProtocol", Ty::Str),
    ],
};

/// `core.v1.ServiceStatus`.
pub static SERVICE_STATUS: Msg = Msg {
    name: "core.v1.ServiceStatus",
    fields: &[
        one(1, "loadBalancer", Ty::Any),
        many(2, "conditions", Ty::Msg(&CONDITION)),
    ],
};

/// `core.v1.ServiceAccount`.
pub static SERVICE_ACCOUNT: Msg = Msg {
    name: "core.v1.ServiceAccount",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        many(2, "secrets", Ty::Msg(&OBJECT_REFERENCE)),
        many(3, "imagePullSecrets", Ty::Msg(&LOCAL_OBJECT_REFERENCE)),
        one(4, "automountServiceAccountToken", Ty::Bool),
    ],
};

/// `core.v1.ObjectReference`.
pub static OBJECT_REFERENCE: Msg = Msg {
    name: "core.v1.ObjectReference",
    fields: &[
        one(1, "kind", Ty::Str),
        one(2, "namespace", Ty::Str),
        one(3, "name", Ty::Str),
        one(4, "uid", Ty::Str),
        one(5, "apiVersion", Ty::Str),
        one(6, "resourceVersion", Ty::Str),
        one(7, "fieldPath", Ty::Str),
    ],
};

/// `core.v1.LocalObjectReference`.
pub static LOCAL_OBJECT_REFERENCE: Msg = Msg {
    name: "core.v1.LocalObjectReference",
    fields: &[one(1, "name", Ty::Str)],
};

/// `core.v1.Node`.
///
/// Only the top level: `spec` and `status` are read generically.
pub static NODE: Msg = Msg {
    name: "core.v1.Node",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "spec", Ty::Any),
        one(3, "status", Ty::Any),
    ],
};

/// `core.v1.Event`.
pub static EVENT: Msg = Msg {
    name: "core.v1.Event",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "involvedObject", Ty::Msg(&OBJECT_REFERENCE)),
        one(3, "reason", Ty::Str),
        one(4, "message", Ty::Str),
        one(5, "source", Ty::Msg(&EVENT_SOURCE)),
        one(6, "firstTimestamp", Ty::Time),
        one(7, "lastTimestamp", Ty::Time),
        one(8, "count", Ty::Int),
        one(9, "type", Ty::Str),
        one(10, "eventTime", Ty::MicroTime),
        one(11, "series", Ty::Msg(&EVENT_SERIES)),
        one(12, "action", Ty::Str),
        one(13, "related", Ty::Msg(&OBJECT_REFERENCE)),
        one(14, "reportingComponent", Ty::Str),
        one(15, "reportingInstance", Ty::Str),
    ],
};

/// `core.v1.EventSource`.
pub static EVENT_SOURCE: Msg = Msg {
    name: "core.v1.EventSource",
    fields: &[one(1, "component", Ty::Str), one(2, "host", Ty::Str)],
};

/// `core.v1.EventSeries`.
pub static EVENT_SERIES: Msg = Msg {
    name: "core.v1.EventSeries",
    fields: &[
        one(1, "count", Ty::Int),
        one(2, "lastObservedTime", Ty::MicroTime),
    ],
};

/// `core.v1.Endpoints`.
pub static ENDPOINTS: Msg = Msg {
    name: "core.v1.Endpoints",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        many(2, "subsets", Ty::Msg(&ENDPOINT_SUBSET)),
    ],
};

/// `core.v1.EndpointSubset`.
pub static ENDPOINT_SUBSET: Msg = Msg {
    name: "core.v1.EndpointSubset",
    fields: &[
        many(1, "addresses", Ty::Msg(&ENDPOINT_ADDRESS)),
        many(2, "notReadyAddresses", Ty::Msg(&ENDPOINT_ADDRESS)),
        many(3, "ports", Ty::Msg(&ENDPOINT_PORT)),
    ],
};

/// `core.v1.EndpointAddress`.
pub static ENDPOINT_ADDRESS: Msg = Msg {
    name: "core.v1.EndpointAddress",
    fields: &[
        one(1, "ip", Ty::Str),
        one(2, "targetRef", Ty::Msg(&OBJECT_REFERENCE)),
        one(3, "hostname", Ty::Str),
        one(4, "nodeName", Ty::Str),
    ],
};

/// `core.v1.EndpointPort`.
pub static ENDPOINT_PORT: Msg = Msg {
    name: "core.v1.EndpointPort",
    fields: &[
        one(1, "name", Ty::Str),
        one(2, "port", Ty::Int),
        one(3, "protocol", Ty::Str),
        one(4, "appProtocol", Ty::Str),
    ],
};

/// `apps.v1.Deployment`.
pub static DEPLOYMENT: Msg = Msg {
    name: "apps.v1.Deployment",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "spec", Ty::Msg(&DEPLOYMENT_SPEC)),
        one(3, "status", Ty::Msg(&DEPLOYMENT_STATUS)),
    ],
};

/// `apps.v1.DeploymentSpec`.
pub static DEPLOYMENT_SPEC: Msg = Msg {
    name: "apps.v1.DeploymentSpec",
    fields: &[
        one(1, "replicas", Ty::Int),
        one(2, "selector", Ty::Msg(&LABEL_SELECTOR)),
        one(3, "template", Ty::Msg(&POD_TEMPLATE_SPEC)),
        one(4, "strategy", Ty::Msg(&DEPLOYMENT_STRATEGY)),
        one(5, "minReadySeconds", Ty::Int),
        one(6, "revisionHistoryLimit", Ty::Int),
        one(7, "paused", Ty::Bool),
        one(9, "progressDeadlineSeconds", Ty::Int),
    ],
};

/// `apps.v1.DeploymentStrategy`.
pub static DEPLOYMENT_STRATEGY: Msg = Msg {
    name: "apps.v1.DeploymentStrategy",
    fields: &[
        one(1, "type", Ty::Str),
        one(2, "rollingUpdate", Ty::Msg(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
};

/// `apps.v1.RollingUpdateDeployment`.
pub static ROLLING_UPDATE_DEPLOYMENT: Msg = Msg {
    name: "apps.v1.RollingUpdateDeployment",
    fields: &[
        one(1, "maxUnavailable", Ty::IntOrString),
        one(2, "maxSurge", Ty::IntOrString),
    ],
};

/// `apps.v1.DeploymentCondition`.
pub static DEPLOYMENT_CONDITION: Msg = Msg {
    name: "apps.v1.DeploymentCondition",
    fields: &[
        one(1, "type", Ty::Str),
        one(2, "status", Ty::Str),
        one(4, "reason", Ty::Str),
        one(5, "message", Ty::Str),
        one(6, "lastUpdateTime", Ty::Time),
        one(7, "lastTransitionTime", Ty::Time),
    ],
};

/// `apps.v1.DeploymentStatus`.
pub static DEPLOYMENT_STATUS: Msg = Msg {
    name: "apps.v1.DeploymentStatus",
    fields: &[
        one(1, "observedGeneration", Ty::Int),
        one(2, "replicas", Ty::Int),
        one(3, "updatedReplicas", Ty::Int),
        one(4, "availableReplicas", Ty::Int),
        one(5, "unavailableReplicas", Ty::Int),
        many(6, "conditions", Ty::Msg(&DEPLOYMENT_CONDITION)),
        one(7, "readyReplicas", Ty::Int),
        one(8, "collisionCount", Ty::Int),
        one(9, "terminatingReplicas", Ty::Int),
    ],
};

/// `apps.v1.ReplicaSet`.
pub static REPLICA_SET: Msg = Msg {
    name: "apps.v1.ReplicaSet",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "spec", Ty::Msg(&REPLICA_SET_SPEC)),
        one(3, "status", Ty::Msg(&REPLICA_SET_STATUS)),
    ],
};

/// `apps.v1.ReplicaSetSpec`.
pub static REPLICA_SET_SPEC: Msg = Msg {
    name: "apps.v1.ReplicaSetSpec",
    fields: &[
        one(1, "replicas", Ty::Int),
        one(2, "selector", Ty::Msg(&LABEL_SELECTOR)),
        one(3, "template", Ty::Msg(&POD_TEMPLATE_SPEC)),
        one(4, "minReadySeconds", Ty::Int),
    ],
};

/// `apps.v1.ReplicaSetStatus`.
pub static REPLICA_SET_STATUS: Msg = Msg {
    name: "apps.v1.ReplicaSetStatus",
    fields: &[
        one(1, "replicas", Ty::Int),
        one(2, "fullyLabeledReplicas", Ty::Int),
        one(3, "observedGeneration", Ty::Int),
        one(4, "readyReplicas", Ty::Int),
        one(5, "availableReplicas", Ty::Int),
        many(6, "conditions", Ty::Any),
        one(7, "terminatingReplicas", Ty::Int),
    ],
};

/// `apps.v1.DaemonSet`.
pub static DAEMON_SET: Msg = Msg {
    name: "apps.v1.DaemonSet",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "spec", Ty::Msg(&DAEMON_SET_SPEC)),
        one(3, "status", Ty::Msg(&DAEMON_SET_STATUS)),
    ],
};

/// `apps.v1.DaemonSetSpec`.
pub static DAEMON_SET_SPEC: Msg = Msg {
    name: "apps.v1.DaemonSetSpec",
    fields: &[
        one(1, "selector", Ty::Msg(&LABEL_SELECTOR)),
        one(2, "template", Ty::Msg(&POD_TEMPLATE_SPEC)),
        one(3, "updateStrategy", Ty::Any),
        one(4, "minReadySeconds", Ty::Int),
        one(6, "revisionHistoryLimit", Ty::Int),
    ],
};

/// `apps.v1.DaemonSetStatus`.
pub static DAEMON_SET_STATUS: Msg = Msg {
    name: "apps.v1.DaemonSetStatus",
    fields: &[
        one(1, "currentNumberScheduled", Ty::Int),
        one(2, "numberMisscheduled", Ty::Int),
        one(3, "desiredNumberScheduled", Ty::Int),
        one(4, "numberReady", Ty::Int),
        one(5, "observedGeneration", Ty::Int),
        one(6, "updatedNumberScheduled", Ty::Int),
        one(7, "numberAvailable", Ty::Int),
        one(8, "numberUnavailable", Ty::Int),
        one(9, "collisionCount", Ty::Int),
        many(10, "conditions", Ty::Any),
    ],
};

/// `apps.v1.StatefulSet`.
pub static STATEFUL_SET: Msg = Msg {
    name: "apps.v1.StatefulSet",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "spec", Ty::Msg(&STATEFUL_SET_SPEC)),
        one(3, "status", Ty::Msg(&STATEFUL_SET_STATUS)),
    ],
};

/// `apps.v1.StatefulSetSpec`.
pub static STATEFUL_SET_SPEC: Msg = Msg {
    name: "apps.v1.StatefulSetSpec",
    fields: &[
        one(1, "replicas", Ty::Int),
        one(2, "selector", Ty::Msg(&LABEL_SELECTOR)),
        one(3, "template", Ty::Msg(&POD_TEMPLATE_SPEC)),
        many(4, "volumeClaimTemplates", Ty::Any),
        one(5, "serviceName", Ty::Str),
        one(6, "podManagementPolicy", Ty::Str),
        one(7, "updateStrategy", Ty::Any),
        one(8, "revisionHistoryLimit", Ty::Int),
        one(9, "minReadySeconds", Ty::Int),
        one(10, "persistentVolumeClaimRetentionPolicy", Ty::Any),
        one(11, "ordinals", Ty::Any),
    ],
};

/// `apps.v1.StatefulSetStatus`.
pub static STATEFUL_SET_STATUS: Msg = Msg {
    name: "apps.v1.StatefulSetStatus",
    fields: &[
        one(1, "observedGeneration", Ty::Int),
        one(2, "replicas", Ty::Int),
        one(3, "readyReplicas", Ty::Int),
        one(4, "currentReplicas", Ty::Int),
        one(5, "updatedReplicas", Ty::Int),
        one(6, "currentRevision", Ty::Str),
        one(7, "updateRevision", Ty::Str),
        one(9, "collisionCount", Ty::Int),
        many(10, "conditions", Ty::Any),
        one(11, "availableReplicas", Ty::Int),
    ],
};

/// `coordination.v1.Lease`.
pub static LEASE: Msg = Msg {
    name: "coordination.v1.Lease",
    fields: &[
        one(1, "metadata", Ty::Msg(&OBJECT_META)),
        one(2, "spec", Ty::Msg(&LEASE_SPEC)),
    ],
};

/// `coordination.v1.LeaseSpec`.
pub static LEASE_SPEC: Msg = Msg {
    name: "coordination.v1.LeaseSpec",
    fields: &[
        one(1, "holderIdentity", Ty::Str),
        one(2, "leaseDurationSeconds", Ty::Int),
        one(3, "acquireTime", Ty::MicroTime),
        one(4, "renewTime", Ty::MicroTime),
        one(5, "leaseTransitions", Ty::Int),
        one(6, "strategy", Ty::Str),
        one(7, "preferredHolder", Ty::Str),
    ],
};

/// The table for a stored object's `apiVersion` and `kind`, when there is one.
pub fn kind(api_version: &str, kind: &str) -> Option<&'static Msg> {
    match (api_version, kind) {
        ("v1", "Pod") => Some(&POD),
        ("v1", "Secret") => Some(&SECRET),
        ("v1", "ConfigMap") => Some(&CONFIG_MAP),
        ("v1", "Namespace") => Some(&NAMESPACE),
        ("v1", "Service") => Some(&SERVICE),
        ("v1", "ServiceAccount") => Some(&SERVICE_ACCOUNT),
        ("v1", "Node") => Some(&NODE),
        ("v1", "Event") => Some(&EVENT),
        ("v1", "Endpoints") => Some(&ENDPOINTS),
        ("apps/v1", "Deployment") => Some(&DEPLOYMENT),
        ("apps/v1", "ReplicaSet") => Some(&REPLICA_SET),
        ("apps/v1", "DaemonSet") => Some(&DAEMON_SET),
        ("apps/v1", "StatefulSet") => Some(&STATEFUL_SET),
        ("coordination.k8s.io/v1", "Lease") => Some(&LEASE),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Msg, Ty, kind};
    use std::collections::HashSet;

    /// Every table in this file.
    static ALL: &[&Msg] = &[
        &super::DEPLOYMENT_STRATEGY,
        &super::ROLLING_UPDATE_DEPLOYMENT,
        &super::DEPLOYMENT_CONDITION,
        &super::UNKNOWN,
        &super::TYPE_META,
        &super::OBJECT_META,
        &super::OWNER_REFERENCE,
        &super::TIME,
        &super::MICRO_TIME,
        &super::MANAGED_FIELDS_ENTRY,
        &super::FIELDS_V1,
        &super::LABEL_SELECTOR,
        &super::LABEL_SELECTOR_REQUIREMENT,
        &super::CONDITION,
        &super::QUANTITY,
        &super::INT_OR_STRING,
        &super::POD,
        &super::POD_SPEC,
        &super::POD_STATUS,
        &super::POD_TEMPLATE_SPEC,
        &super::CONTAINER,
        &super::CONTAINER_PORT,
        &super::ENV_VAR,
        &super::ENV_VAR_SOURCE,
        &super::RESOURCE_REQUIREMENTS,
        &super::RESOURCE_CLAIM,
        &super::VOLUME_MOUNT,
        &super::VOLUME,
        &super::VOLUME_SOURCE,
        &super::CONTAINER_STATUS,
        &super::CONTAINER_STATE,
        &super::CONTAINER_STATE_RUNNING,
        &super::CONTAINER_STATE_WAITING,
        &super::CONTAINER_STATE_TERMINATED,
        &super::POD_CONDITION,
        &super::POD_IP,
        &super::HOST_IP,
        &super::TOLERATION,
        &super::SECRET,
        &super::CONFIG_MAP,
        &super::NAMESPACE,
        &super::NAMESPACE_SPEC,
        &super::NAMESPACE_STATUS,
        &super::NAMESPACE_CONDITION,
        &super::SERVICE,
        &super::SERVICE_SPEC,
        &super::SERVICE_PORT,
        &super::SERVICE_STATUS,
        &super::SERVICE_ACCOUNT,
        &super::OBJECT_REFERENCE,
        &super::LOCAL_OBJECT_REFERENCE,
        &super::NODE,
        &super::EVENT,
        &super::EVENT_SOURCE,
        &super::EVENT_SERIES,
        &super::ENDPOINTS,
        &super::ENDPOINT_SUBSET,
        &super::ENDPOINT_ADDRESS,
        &super::ENDPOINT_PORT,
        &super::DEPLOYMENT,
        &super::DEPLOYMENT_SPEC,
        &super::DEPLOYMENT_STATUS,
        &super::REPLICA_SET,
        &super::REPLICA_SET_SPEC,
        &super::REPLICA_SET_STATUS,
        &super::DAEMON_SET,
        &super::DAEMON_SET_SPEC,
        &super::DAEMON_SET_STATUS,
        &super::STATEFUL_SET,
        &super::STATEFUL_SET_SPEC,
        &super::STATEFUL_SET_STATUS,
        &super::LEASE,
        &super::LEASE_SPEC,
    ];

    #[test]
    fn numbers_are_unique_and_names_set() {
        let mut tables = HashSet::new();
        for msg in ALL {
            assert!(tables.insert(msg.name), "{} listed twice", msg.name);
            assert!(!msg.fields.is_empty(), "{} has no fields", msg.name);
            let mut nums = HashSet::new();
            for f in msg.fields {
                assert_ne!(f.num, 0, "{}: field number 0", msg.name);
                assert!(nums.insert(f.num), "{}: field {} twice", msg.name, f.num);
                // Only an embedded message (Go's inlined struct) goes unnamed.
                let embedded = !f.repeated && matches!(f.ty, Ty::Msg(_));
                assert!(
                    !f.name.is_empty() || embedded,
                    "{}: field {} has no name",
                    msg.name,
                    f.num
                );
            }
        }
    }

    #[test]
    fn every_referenced_table_is_listed() {
        let listed: HashSet<*const Msg> = ALL.iter().map(|m| std::ptr::from_ref(*m)).collect();
        for msg in ALL {
            for f in msg.fields {
                if let Ty::Msg(m) | Ty::MapMsg(m) = f.ty {
                    assert!(
                        listed.contains(&std::ptr::from_ref(m)),
                        "{}: field {} points at an unlisted {}",
                        msg.name,
                        f.num,
                        m.name
                    );
                }
            }
        }
    }

    #[test]
    fn secret_data_and_pod_metadata() {
        let secret = kind("v1", "Secret").unwrap();
        assert_eq!(secret.name, "core.v1.Secret");
        let data = secret.field(2).unwrap();
        assert_eq!(data.name, "data");
        assert!(matches!(data.ty, Ty::MapBytes));

        let pod = kind("v1", "Pod").unwrap();
        assert_eq!(pod.name, "core.v1.Pod");
        let metadata = pod.field(1).unwrap();
        assert_eq!(metadata.name, "metadata");
        let Ty::Msg(meta) = metadata.ty else {
            panic!("Pod.metadata is not a message with a table");
        };
        assert!(std::ptr::eq(meta, &raw const super::OBJECT_META));
        let created = meta.field(8).unwrap();
        assert_eq!(created.name, "creationTimestamp");
        assert!(matches!(created.ty, Ty::Time));
    }

    #[test]
    fn volume_inlines_its_source() {
        let source = super::VOLUME.field(2).unwrap();
        assert!(source.name.is_empty());
        assert!(matches!(source.ty, Ty::Msg(m) if std::ptr::eq(m, &raw const super::VOLUME_SOURCE)));
        assert!(kind("v1", "Volume").is_none());
        assert!(kind("apps/v1", "Pod").is_none());
    }
}
