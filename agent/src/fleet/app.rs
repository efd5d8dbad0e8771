//! `berth fleet push --app compose.yaml`: the compose file normalised here, on the operator's
//! machine, into the application the devices apply (`berth_proto::wire::App`): the firmware reads
//! no YAML. Each service becomes the `berth run` words `berth compose up` would use, in start
//! order, with what later services wait for; the networks and volumes it declares come along.

use std::path::Path;

use berth_compose::model::Condition;
use berth_compose::project::{load, Options};
use berth_compose::translate::{self, Origin, Support, LABEL_PROJECT, LABEL_VOLUME};
use berth_compose::validate::start_order;
use berth_proto::wire::{App, AppAttach, AppNetwork, AppService, AppVolume};

/// A device has what `berth compose up` uses.
const SUPPORT: Support = Support { networks: true, publish: true, dns: true, sysctls: true };

/// The application of compose file `file`: its project name and its spec.
pub fn spec(file: &Path) -> Result<(String, App), String> {
    let workdir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::env::current_dir().map_err(|e| format!("find the working directory: {e}"))?,
    };
    let opts = Options {
        files: vec![file.to_path_buf()],
        project_name: None,
        env_files: Vec::new(),
        workdir,
        environ: std::env::vars().collect(),
    };
    let loaded = load(&opts).map_err(|e| e.to_string())?;
    for w in &loaded.warnings {
        eprintln!("WARN[0000] {w}");
    }
    let p = &loaded.project;
    let in_file = |e: berth_compose::model::Error| e.in_file(&file.display().to_string()).to_string();
    let origin = Origin {
        working_dir: loaded.dir.display().to_string(),
        config_files: loaded.files.iter().map(|f| f.display().to_string()).collect(),
    };
    let mut services = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    for s in start_order(p) {
        let svc = &p.services[&s];
        if svc.image.is_none() {
            return Err(format!("service {s:?} has no image: fleet push --app sends images, it does not build them"));
        }
        // The first network is in the run words; the others are joined before the start.
        let nets = translate::attachments(p, &s).map_err(in_file)?;
        let connect = nets.into_iter().skip(1).map(|a| AppAttach { network: a.network, aliases: a.aliases, ip: a.ip }).collect::<Vec<_>>();
        if svc.network_mode.is_none() {
            keys.extend(svc.networks.keys().cloned());
        }
        let run = translate::run_words(p, &s, 1, &origin, SUPPORT).map_err(in_file)?;
        // The strongest condition any dependent names.
        let rank = |c: Condition| match c {
            Condition::Started => 0,
            Condition::Healthy => 1,
            Condition::CompletedSuccessfully => 2,
        };
        let ready = p.services.values().filter_map(|o| o.depends_on.get(&s)).map(|d| d.condition).max_by_key(|c| rank(*c));
        let ready = match ready {
            Some(Condition::Healthy) => "healthy",
            Some(Condition::CompletedSuccessfully) => "completed",
            Some(Condition::Started) => "started",
            None => "",
        };
        services.push(AppService { service: s.clone(), run, ready: ready.into(), connect });
    }
    keys.sort();
    keys.dedup();
    let mut networks = Vec::new();
    for k in &keys {
        if let Some(plan) = translate::network_plan(p, k).map_err(in_file)? {
            networks.push(AppNetwork {
                name: plan.name,
                subnet: plan.subnet,
                gateway: plan.gateway,
                internal: plan.internal,
                labels: plan.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                options: plan.options.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            });
        }
    }
    let project = loaded.name.clone();
    let volumes = p
        .volumes
        .iter()
        .filter(|(_, v)| !v.external)
        .map(|(k, v)| {
            let mut labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.push(format!("{LABEL_PROJECT}={project}"));
            labels.push(format!("{LABEL_VOLUME}={k}"));
            AppVolume { name: v.name.clone().unwrap_or_else(|| format!("{project}_{k}")), labels, revision_bound: v.revision_bound }
        })
        .collect();
    Ok((project, App { services, networks, volumes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_on_two_networks_joins_the_second_before_it_starts() {
        let dir = std::env::temp_dir().join(format!("berth-app-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("compose.yaml");
        std::fs::write(
            &f,
            "name: shop\nservices:\n  db:\n    image: db:1\n    networks: [back]\n  web:\n    image: web:1\n    depends_on: [db]\n    \
             networks:\n      front: {}\n      back:\n        aliases: [www]\n        ipv4_address: 10.89.1.9\n\
             networks:\n  front: {}\n  back:\n    ipam:\n      config: [{subnet: 10.89.1.0/24}]\n",
        )
        .unwrap();
        let (name, app) = spec(&f).unwrap();
        assert_eq!(name, "shop");
        let web = app.services.iter().find(|s| s.service == "web").unwrap();
        let first = web.run.iter().position(|w| w == "--network").map(|i| web.run[i + 1].as_str());
        assert_eq!(first, Some("shop_back"), "the first network (by key) is in the run words: {:?}", web.run);
        assert_eq!(web.connect, [AppAttach { network: "shop_front".into(), aliases: vec!["web".into()], ip: None }]);
        let db = app.services.iter().find(|s| s.service == "db").unwrap();
        assert!(db.connect.is_empty());
        let mut nets: Vec<&str> = app.networks.iter().map(|n| n.name.as_str()).collect();
        nets.sort();
        assert_eq!(nets, ["shop_back", "shop_front"], "both networks are made");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
