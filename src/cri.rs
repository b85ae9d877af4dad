//! The CRI runtime.v1 types and gRPC stubs generated from `proto/api.proto`.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("runtime.v1");

/// Serde helpers for enum fields: prost stores them as `i32`; configs may give
/// the number (as crictl's Go JSON does) or the proto name (`"NODE"`).
pub mod serde_enum {
    use serde::{Deserialize, Deserializer, de::Error};

    /// A generated CRI enum, looked up by its proto name.
    pub trait ProtoEnum {
        fn value_of(name: &str) -> Option<i32>;
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrName {
        Number(i32),
        Name(String),
    }

    fn resolve<E: ProtoEnum, Err: Error>(value: NumberOrName) -> Result<i32, Err> {
        match value {
            NumberOrName::Number(n) => Ok(n),
            NumberOrName::Name(name) => E::value_of(&name)
                .ok_or_else(|| Err::custom(format!("unknown enum value {name:?}"))),
        }
    }

    pub fn enum_value<'de, D: Deserializer<'de>, E: ProtoEnum>(d: D) -> Result<i32, D::Error> {
        resolve::<E, _>(NumberOrName::deserialize(d)?)
    }

    pub fn enum_values<'de, D: Deserializer<'de>, E: ProtoEnum>(
        d: D,
    ) -> Result<Vec<i32>, D::Error> {
        Vec::<NumberOrName>::deserialize(d)?
            .into_iter()
            .map(resolve::<E, _>)
            .collect()
    }

    macro_rules! proto_enums {
        ($($ty:ty),* $(,)?) => {$(
            impl ProtoEnum for $ty {
                fn value_of(name: &str) -> Option<i32> {
                    <$ty>::from_str_name(name).map(|v| v as i32)
                }
            }
        )*};
    }

    proto_enums!(
        super::Protocol,
        super::MountPropagation,
        super::NamespaceMode,
        super::SupplementalGroupsPolicy,
        super::security_profile::ProfileType,
        super::PodSandboxState,
        super::Signal,
        super::ContainerState,
        super::ContainerEventType,
        super::MetricType,
        super::CgroupDriver,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crictl_style_pod_config_parses() {
        // Keys and enum numbers as in crictl's sample configs.
        let json = r#"{
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "attempt": 1},
            "log_directory": "/tmp/logs",
            "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": 8080}],
            "linux": {"security_context": {"namespace_options": {"network": 2, "pid": "CONTAINER"}}}
        }"#;
        let config: PodSandboxConfig = serde_json::from_str(json).unwrap();
        let meta = config.metadata.unwrap();
        assert_eq!((meta.name.as_str(), meta.attempt), ("web", 1));
        assert_eq!(config.log_directory, "/tmp/logs");
        assert_eq!(config.port_mappings[0].host_port, 8080);
        let ns = config
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network(), NamespaceMode::Node);
        assert_eq!(ns.pid(), NamespaceMode::Container);
    }

    #[test]
    fn unknown_enum_name_is_an_error() {
        let err = serde_json::from_str::<NamespaceOption>(r#"{"network": "NOPE"}"#).unwrap_err();
        assert!(err.to_string().contains("NOPE"), "{err}");
    }

    #[test]
    fn non_snake_proto_names_keep_their_spelling() {
        let json = r#"{"CDI_devices": [{"name": "vendor.com/gpu=0"}]}"#;
        let config: ContainerConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.cdi_devices[0].name, "vendor.com/gpu=0");
        let back = serde_json::to_value(&config).unwrap();
        assert!(back.get("CDI_devices").is_some());
    }

    #[test]
    fn yaml_container_config_parses() {
        let yaml = "metadata:\n  name: box\nimage:\n  image: busybox\ncommand: [sleep, '60']\nlog_path: box.log\n";
        let config: ContainerConfig = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(config.image.unwrap().image, "busybox");
        assert_eq!(config.command, ["sleep", "60"]);
    }
}

#[cfg(test)]
mod sample_config_tests {
    use super::*;
    use std::path::Path;

    /// The crictl-format configs shipped (scenario tests, examples) parse.
    #[test]
    fn shipped_crictl_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let entries = ["crictl-tests/configs", "manifests/pods"]
            .into_iter()
            .flat_map(|dir| std::fs::read_dir(root.join(dir)).unwrap());
        let mut parsed = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let yaml = name.ends_with(".yaml");
            macro_rules! parse {
                ($ty:ty) => {{
                    let v: $ty = if yaml {
                        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
                    } else {
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
                    };
                    assert!(v.metadata.is_some(), "{name}");
                }};
            }
            if name.starts_with("pod-") || name.ends_with("-pod.json") {
                parse!(PodSandboxConfig);
            } else if name.starts_with("container-") || name.ends_with("-container.json") {
                parse!(ContainerConfig);
            } else {
                continue;
            }
            parsed += 1;
        }
        assert!(parsed >= 5);
    }
}
