//! Names that cross a boundary: container names (CLI, socket, update manifests) and device ids
//! (broker topics and client ids). One check each, shared by the daemon, the CLI and the fleet tool.

/// Docker's container name alphabet: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphanumeric() && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Device ids become topic levels and client ids: keep them to a safe alphabet.
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_device_ids() {
        assert!(valid_name("web-1.a_b") && !valid_name("a") && !valid_name("-ab") && !valid_name("a/b"));
        assert!(valid_device_id("dev-1.a_b") && !valid_device_id("a/b") && !valid_device_id("a+") && !valid_device_id(""));
    }
}
