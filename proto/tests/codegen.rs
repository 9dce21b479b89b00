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
