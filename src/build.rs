//! Generates the CRI client and server from `assets/proto/cri-runtime-v1.proto` (needs `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "assets/proto/cri-runtime-v1.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure()
        .compile_protos(&[proto], &["assets/proto"])
        .map_err(|e| {
            format!("{e}\nhint: protoc is needed: run `make setup` (apt-get install protobuf-compiler)")
        })?;
    Ok(())
}
