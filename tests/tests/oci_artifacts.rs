//! `berth load` of OCI layouts that hold more than images (issue 19, item 5): build attestations
//! in a nested index (`unknown/unknown`, as `docker buildx` adds them), artifacts with an
//! `artifactType` and the empty config, referrers (`subject`), cosign-style signatures whose
//! layers are not tars. The images load; the rest is skipped. Layouts are written here from the
//! skopeo-made fixture, every blob named by its real digest.

use serde_json::{json, Value};

use berth_tests::craft::{raw_tar, RawEntry};
use berth_tests::fixtures::{read_maybe_compressed, tar_entries};
use berth_tests::{fixtures, require_root, s, sha256_digest, Root};

struct Layout {
    entries: Vec<(String, Vec<u8>)>,
}

impl Layout {
    fn blob(&mut self, data: &[u8]) -> (String, usize) {
        let d = sha256_digest(data);
        let path = format!("blobs/sha256/{}", &d[7..]);
        if !self.entries.iter().any(|(p, _)| *p == path) {
            self.entries.push((path, data.to_vec()));
        }
        (d, data.len())
    }

    fn json_blob(&mut self, v: &Value) -> (String, usize) {
        self.blob(&serde_json::to_vec(v).expect("encode"))
    }

    fn write(&self, root: &Root, index: &Value) -> std::path::PathBuf {
        let mut raw: Vec<RawEntry> =
            self.entries.iter().filter(|(p, _)| p != "index.json" && p != "manifest.json").map(|(p, d)| RawEntry::file(p, d)).collect();
        raw.push(RawEntry::file("index.json", &serde_json::to_vec(index).expect("encode index")));
        let path = root.scratch().join("layout.tar");
        std::fs::write(&path, raw_tar(&raw)).expect("write layout");
        path
    }
}

/// The fixture's OCI archive split into its files, and its one image manifest descriptor.
fn base() -> (Layout, Value) {
    let f = fixtures();
    let entries: Vec<(String, Vec<u8>)> = tar_entries(&read_maybe_compressed(&f.layered_oci.path))
        .into_iter()
        .filter(|e| e.kind == tar::EntryType::Regular)
        .map(|e| (e.path, e.data))
        .collect();
    let index: Value = serde_json::from_slice(&entries.iter().find(|(p, _)| p == "index.json").expect("index.json").1).expect("index JSON");
    let mut desc = index["manifests"][0].clone();
    desc.as_object_mut().expect("descriptor").remove("annotations");
    (Layout { entries }, desc)
}

const EMPTY: &str = "application/vnd.oci.empty.v1+json";

#[test]
fn load_skips_attestations_artifacts_referrers_and_signatures() {
    require_root();
    let (mut l, image) = base();
    let img = fixtures().layered_oci.image();
    // buildx: a nested index with the image and its attestation manifest.
    let (intoto, intoto_len) = l.blob(br#"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document"}"#);
    let att_config = json!({"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": {"type": "layers", "diff_ids": [intoto]}});
    let (cd, cl) = l.json_blob(&att_config);
    let att = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": intoto, "size": intoto_len,
            "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"}}]});
    let (ad, al) = l.json_blob(&att);
    let mut plat_image = image.clone();
    plat_image["platform"] = json!({"os": "linux", "architecture": img.config["architecture"]});
    let nested = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        plat_image,
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": ad, "size": al, "platform": {"os": "unknown", "architecture": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": image["digest"]}}]});
    let (nd, nl) = l.json_blob(&nested);
    // An SBOM artifact that refers to the image (a referrer with an artifactType).
    let (empty, empty_len) = l.blob(b"{}");
    let (sbom, sbom_len) = l.blob(br#"{"spdxVersion":"SPDX-2.3"}"#);
    let artifact = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": "application/spdx+json",
        "config": {"mediaType": EMPTY, "digest": empty, "size": empty_len},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom, "size": sbom_len}],
        "subject": image});
    let (artd, artl) = l.json_blob(&artifact);
    // A cosign-style signature: an image config, but the layer is a JSON payload.
    let (payload, payload_len) = l.blob(br#"{"critical":{"identity":{"docker-reference":"layered"}}}"#);
    let sig_config = json!({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": [payload]}});
    let (sc, scl) = l.json_blob(&sig_config);
    let sig = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sc, "size": scl},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": payload, "size": payload_len}]});
    let (sigd, sigl) = l.json_blob(&sig);
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nd, "size": nl,
         "annotations": {"io.containerd.image.name": "docker.io/library/layered:multi", "org.opencontainers.image.ref.name": "multi"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": artd, "size": artl, "artifactType": "application/spdx+json"},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sigd, "size": sigl,
         "annotations": {"org.opencontainers.image.ref.name": "sha256-abc.sig"}}]});
    let root = Root::new();
    let path = l.write(&root, &index);
    let out = root.ok(&["load", "-i", s(&path)]);
    assert!(out.contains("Loaded image: layered:multi"), "load output: {out}");
    let ids = root.ok(&["images", "-q", "--no-trunc"]);
    assert_eq!(ids.trim(), img.id, "only the image is loaded");
}

#[test]
fn load_of_a_layout_holding_only_artifacts_names_what_it_skipped() {
    require_root();
    let (mut l, image) = base();
    let (empty, empty_len) = l.blob(b"{}");
    let (sbom, sbom_len) = l.blob(br#"{"spdxVersion":"SPDX-2.3"}"#);
    let artifact = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": "application/spdx+json",
        "config": {"mediaType": EMPTY, "digest": empty, "size": empty_len},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom, "size": sbom_len}], "subject": image});
    let (artd, artl) = l.json_blob(&artifact);
    // Listed without its artifactType in the index: found from the manifest itself.
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": artd, "size": artl}]});
    let root = Root::new();
    let path = l.write(&root, &index);
    let (code, err) = root.fail(&["load", "-i", s(&path)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("holds no image") && err.contains("application/spdx+json") && err.contains(&artd), "{err}");
    assert!(!err.contains("rootfs.diff_ids"), "{err}");
}
