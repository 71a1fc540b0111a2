//! Files in the seed-004 shape (the libvirt autoscaler design): they load, map onto Flotilla's
//! groups, warn about the parts that do not apply, and report problems at their place in the file.

use std::path::Path;

use flotilla_config::{parse, ProviderConfig, ProviderTemplate};
use flotilla_model::{MetricChoice, PolicySpec};

/// A directory with a (tiny, but real-headed) qcow2 image, kernel and initrd, and a user-data file.
fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut qcow = b"QFI\xfb".to_vec();
    qcow.extend([0u8; 508]);
    std::fs::write(dir.path().join("base.qcow2"), qcow).unwrap();
    std::fs::write(dir.path().join("vmlinux"), b"kernel").unwrap();
    std::fs::write(dir.path().join("initrd.img"), b"initrd").unwrap();
    dir
}

fn seed_file(dir: &Path, tail: &str) -> String {
    let d = dir.display();
    format!(
        r#"version: v1
scaling:
  databases:
    state:
      store:
        type: mysql
        ip: localhost
        port: 3306
    metrics:
      store:
        type: influxdb
      interval: 5s
      evaluate: 1m
      trailing: 15s
  hostGroups:
    group-1:
      - qemu:///system
      - test:///default
  autoscalingGroups:
    rivendell:
      image:
        name: {d}/base.qcow2
        kernel: {d}/vmlinux
        initrd: {d}/initrd.img
        imageMigration: migrate
      cloud-init:
        inline: |
          #cloud-config
          runcmd: ["echo $HOME"]
      hostGroup: group-1
      replacement:
        strategy: rollingupdate
        maxUnavailable: 1
      networking:
        ports: 21000-21019
      scaling:
        maxNodes: 4
        minNodes: 2
        increment: 1
        cooldown: 1m
        metrics:
          io: 80
          cpu: 75
          memory: 75
{tail}"#
    )
}

#[test]
fn the_seed_shape_maps_onto_a_group() {
    let dir = files();
    let config = parse(&seed_file(dir.path(), ""), "seed.yaml").unwrap_or_else(|e| panic!("{e}"));
    let g = &config.groups[0].spec;
    assert_eq!(g.id.as_str(), "rivendell");
    assert_eq!((g.min, g.max, g.increment), (2, 4, 1));
    assert_eq!(g.cooldown_up.as_secs(), 60);
    assert_eq!(g.interval.as_secs(), 5);
    let PolicySpec::Threshold(t) = &g.policy else { panic!("{:?}", g.policy) };
    // cpu and memory at 75: the larger of the two against 75; trailing 15s / interval 5s = 3 samples.
    assert_eq!((t.metric, t.high, t.min_up, t.min_down), (MetricChoice::Max, 75.0, 3, 3));
    assert_eq!(g.rollout.map(|r| r.max_unavailable), Some(1));
    let ProviderConfig::Libvirt(p) = &config.provider else { panic!("{:?}", config.provider) };
    let uris: Vec<&str> = p.hosts.iter().map(|h| h.uri.as_str()).collect();
    assert_eq!(uris, ["qemu:///system", "test:///default"]);
    let Some(ProviderTemplate::Libvirt(t)) = config.group(&g.id).and_then(|c| c.template.as_ref()) else {
        panic!("no template")
    };
    assert_eq!(t.image, dir.path().join("base.qcow2"));
    assert!(t.user_data.as_deref().unwrap_or("").contains("runcmd"));
    // What does not apply is said, with its line.
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    let has = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(
        has("seed.yaml:6:15: scaling.databases.state.store.type: a mysql state store does not apply"),
        "{warnings:#?}"
    );
    assert!(has("scaling.databases.metrics.store.type: a influxdb metrics store does not apply"), "{warnings:#?}");
    assert!(has("scaling.databases.metrics.evaluate: does not apply"), "{warnings:#?}");
    assert!(has("image.imageMigration: does not apply"), "{warnings:#?}");
    assert!(has("scaling.metrics.io: an io threshold is not evaluated"), "{warnings:#?}");
}

#[test]
fn problems_are_reported_at_their_place_in_the_seed_file() {
    let dir = files();
    let text = seed_file(dir.path(), "")
        .replace("maxNodes: 4", "maxNodes: 40")
        .replace("memory: 75", "memory: 90")
        .replace("hostGroup: group-1", "hostGroup: group-9")
        .replace("      networking:", "      colour: blue\n      networking:");
    let errors = parse(&text, "seed.yaml").unwrap_err().to_string();
    assert!(errors.contains("scaling.autoscalingGroups.rivendell.hostGroup: no host group `group-9`"), "{errors}");
    assert!(errors.contains("scaling.autoscalingGroups.rivendell.colour: unknown field `colour`"), "{errors}");
    assert!(
        errors.contains(
            "scaling.autoscalingGroups.rivendell.scaling.metrics.memory: cpu and memory thresholds must be equal"
        ),
        "{errors}"
    );

    // A pool smaller than max: reported at maxNodes, with Flotilla's own field named.
    let small = seed_file(dir.path(), "").replace("maxNodes: 4", "maxNodes: 40");
    let errors = parse(&small, "seed.yaml").unwrap_err().to_string();
    assert!(errors.contains("seed.yaml:"), "{errors}");
    assert!(errors.contains("maxNodes"), "{errors}");

    // A missing image file names the image.
    let missing = seed_file(dir.path(), "").replace("base.qcow2", "nope.qcow2");
    let errors = parse(&missing, "seed.yaml").unwrap_err().to_string();
    assert!(errors.contains("scaling.autoscalingGroups.rivendell.image.name"), "{errors}");
}
