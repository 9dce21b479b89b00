//! Guards that the committed generated code matches the `.proto` sources.
//!
//! Regenerates into a temporary folder with protox (no system `protoc`) and
//! tonic-prost-build. With `BAKERY_BLESS=1` the fresh code is written over
//! `src/gen/` instead of failing; `cargo xtask codegen` does exactly that.

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate_into(out_dir: &Path) {
    let root = crate_dir();
    let files: Vec<PathBuf> = bakery_proto::PROTO_FILES.iter().map(|f| root.join(f)).collect();
    let descriptors = protox::compile(&files, [root.join("proto")]).expect("the .proto files compile");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::SliceCodec")
        .out_dir(out_dir)
        .emit_rerun_if_changed(false)
        .compile_fds(descriptors)
        .expect("code generation succeeds");
    // The collector's ingest server: the same service and route, but each AgentMessage arrives
    // with its bytes (`crate::codec::Received`). Written as `bakery.v1.Ingest.rs`.
    let stream = tonic_build::manual::Method::builder()
        .name("stream")
        .route_name("Stream")
        .input_type("crate::codec::Received<crate::v1::AgentMessage>")
        .output_type("crate::v1::CollectorMessage")
        .codec_path("crate::codec::ReceivedCodec")
        .client_streaming()
        .server_streaming()
        .build();
    let ingest = tonic_build::manual::Service::builder().name("Ingest").package("bakery.v1").method(stream).build();
    tonic_build::manual::Builder::new().build_client(false).out_dir(out_dir).compile(&[ingest]);
}

#[test]
fn generated_code_is_up_to_date() {
    let fresh = tempfile::tempdir().unwrap();
    generate_into(fresh.path());
    let committed_dir = crate_dir().join("src/gen");
    let bless = std::env::var_os("BAKERY_BLESS").is_some();
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(fresh.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let new = std::fs::read_to_string(entry.path()).unwrap();
        let committed_path = committed_dir.join(&name);
        let old = std::fs::read_to_string(&committed_path).unwrap_or_default();
        if old != new {
            if bless {
                std::fs::write(&committed_path, new).unwrap();
            } else {
                stale.push(name.to_string_lossy().into_owned());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated code in proto/src/gen is stale for {stale:?}: run `cargo xtask codegen` and commit the result"
    );
}
