//! The compose reader on arbitrary text: YAML, interpolation, the model, validation, `config`
//! output and the translation to `run` words. Errors are fine; panics, hangs and runaway memory
//! (alias bombs, deep nesting) are not. A project that loads prints a `config` that loads back to
//! the same `config` (the printed model is a fixed point), has every service in its start order,
//! and translates every service without a panic.
#![no_main]

use std::path::Path;

use berth_compose::project::{load_texts, Options};
use berth_compose::translate::{run_words, Origin, Support};
use berth_compose::{config, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = Options {
        workdir: "/srv/app".into(),
        environ: [("HOME", "/root"), ("TAG", "1.0"), ("EMPTY", "")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    let dir = Path::new("/srv/app");
    // env_file entries read the file system: leave those inputs to the unit tests.
    if text.contains("env_file") {
        return;
    }
    let Ok((p, _)) = load_texts(&[("compose.yaml".into(), text.into())], dir, &opts, &[]) else { return };
    let printed = config::to_yaml(&p);
    let (again, _) = load_texts(&[("config.yaml".into(), printed.clone())], dir, &opts, &[])
        .unwrap_or_else(|e| panic!("config output does not load back: {e}\n{printed}"));
    assert_eq!(config::to_yaml(&again), printed, "config output is not a fixed point");
    let order = validate::start_order(&p);
    assert_eq!(order.len(), p.services.len());
    let origin = Origin { working_dir: "/srv/app".into(), config_files: vec!["/srv/app/compose.yaml".into()] };
    let all = Support { networks: true, publish: true, dns: true, sysctls: true };
    for name in p.services.keys() {
        let _ = run_words(&p, name, 1, &origin, Support::default());
        let _ = run_words(&p, name, 1, &origin, all);
    }
});
