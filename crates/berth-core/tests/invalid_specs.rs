//! The table of invalid inputs: each case breaks a valid app in one way and asserts the exact
//! diagnostic: file, line, field path and message.

use berth_core::load::{Inputs, load};

/// A valid app; cases replace one snippet of it.
const BASE: &str = r#"apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata:
  name: zk
spec:
  params:
    - key: replicas
      path: spec.parts[0].replicas
      type: int
    - key: tier
      path: spec.parts[0].template.metadata.labels.tier
      type: enum
      values: [gold, silver]
      default: gold
  parts:
    - name: server
      replicas: 3
      template:
        metadata:
          labels: {}
        spec:
          containers:
            - name: zk
              image: zookeeper:3.8
              command: ["run", "{{ part.replicas }}"]
      state:
        persistent:
          - name: data
            size: 1Gi
            mountPath: /data
        config:
          files:
            - name: zoo.cfg
              path: /conf/zoo.cfg
              content: |
                {% for m in members %}server.{{ m.ordinal }}={{ m.address }}
                {% endfor %}
        topology:
          ports:
            - name: client
              port: 2181
          roles:
            - name: leader
      services:
        - name: client
          ports: [client]
"#;

struct Case {
    name: &'static str,
    replace: &'static str,
    with: &'static str,
    values: &'static str,
    sets: &'static [&'static str],
    expected: &'static str,
}

const fn case(
    name: &'static str,
    replace: &'static str,
    with: &'static str,
    expected: &'static str,
) -> Case {
    Case {
        name,
        replace,
        with,
        values: "",
        sets: &[],
        expected,
    }
}

const CASES: &[Case] = &[
    case(
        "malformed yaml",
        "  name: zk\n",
        "  name: [zk\n",
        "app.yaml:5: malformed YAML: illegal placement of ':' indicator",
    ),
    case(
        "wrong apiVersion",
        "berth.io/v1alpha1",
        "berth.io/v1",
        "app.yaml:1: apiVersion: expected `berth.io/v1alpha1`, found `berth.io/v1`",
    ),
    case(
        "wrong kind",
        "kind: StatefulApp",
        "kind: WorkLoad",
        "app.yaml:2: kind: expected `StatefulApp`, found `WorkLoad`",
    ),
    case(
        "missing name",
        "  name: zk\n",
        "  labels: {}\n",
        "app.yaml:3: metadata.name: the app needs a name",
    ),
    case(
        "bad app name",
        "  name: zk\n",
        "  name: Zk_1\n",
        "app.yaml:4: metadata.name: `Zk_1` is not a valid app name: expected at most 40 lowercase letters, digits and '-', starting and ending with a letter or digit",
    ),
    case(
        "unknown field",
        "      replicas: 3\n",
        "      replicaz: 3\n",
        "app.yaml:17: spec.parts[0].replicaz: unknown field `replicaz`, expected one of `name`, `kind`, `replicas`, `podManagement`, `template`, `state`, `services`, `scheduling`, `update`, `local`",
    ),
    case(
        "negative replicas",
        "      replicas: 3\n",
        "      replicas: -1\n",
        "app.yaml:17: spec.parts[0].replicas: expected a member count from 0 to 1000, found -1",
    ),
    case(
        "absurd replicas",
        "      replicas: 3\n",
        "      replicas: 100000\n",
        "app.yaml:17: spec.parts[0].replicas: expected a member count from 0 to 1000, found 100000",
    ),
    case(
        "replicas of the wrong type",
        "      replicas: 3\n",
        "      replicas: three\n",
        "app.yaml:17: spec.parts[0].replicas: expected a whole number, found \"three\"",
    ),
    case(
        "daemonset with replicas",
        "    - name: server\n",
        "    - name: server\n      kind: DaemonSet\n",
        "app.yaml:18: spec.parts[0].replicas: a DaemonSet runs one member per node: remove `replicas`",
    ),
    case(
        "unknown workload kind",
        "    - name: server\n",
        "    - name: server\n      kind: ReplicaSet\n",
        "app.yaml:17: spec.parts[0].kind: unknown variant `ReplicaSet`, expected one of `StatefulSet`, `Deployment`, `DaemonSet`",
    ),
    case(
        "duplicate part",
        "      services:\n",
        "      services: []\n    - name: server\n      template: {spec: {containers: [{name: a, image: b}]}}\n      services:\n",
        "app.yaml:45: spec.parts[1].name: duplicate part name `server` (first used at spec.parts[0].name)",
    ),
    case(
        "unknown field in the pod template",
        "              image: zookeeper:3.8\n",
        "              imagee: zookeeper:3.8\n",
        "app.yaml:24: spec.parts[0].template.spec.containers[0].imagee: unknown field `imagee`; did you mean `image`?",
    ),
    case(
        "unknown field in the pod template's metadata",
        "          labels: {}\n",
        "          labels: {}\n          annotation: {a: b}\n",
        "app.yaml:21: spec.parts[0].template.metadata.annotation: unknown field `annotation`; did you mean `annotations`?",
    ),
    case(
        "unknown pod field far from any known one",
        "          containers:\n",
        "          flavour: spicy\n          containers:\n",
        "app.yaml:22: spec.parts[0].template.spec.flavour: unknown field `flavour`, expected one of `activeDeadlineSeconds`, `affinity`, `automountServiceAccountToken`, `containers`, `dnsConfig`, `dnsPolicy`, `enableServiceLinks`, `ephemeralContainers`, `hostAliases`, `hostIPC`, `hostNetwork`, `hostPID`, `hostUsers`, `hostname`, `imagePullSecrets`, `initContainers`, `nodeName`, `nodeSelector`, `os`, `overhead`, `preemptionPolicy`, `priority`, `priorityClassName`, `readinessGates`, `resourceClaims`, `resources`, `restartPolicy`, `runtimeClassName`, `schedulerName`, `schedulingGates`, `securityContext`, `serviceAccount`, `serviceAccountName`, `setHostnameAsFQDN`, `shareProcessNamespace`, `subdomain`, `terminationGracePeriodSeconds`, `tolerations`, `topologySpreadConstraints`, `volumes`",
    ),
    case(
        "cpu that is no quantity",
        "              image: zookeeper:3.8\n",
        "              image: zookeeper:3.8\n              resources: {requests: {cpu: lots}}\n",
        "app.yaml:25: spec.parts[0].template.spec.containers[0].resources.requests.cpu: `lots` is not a quantity: expected a number with an optional suffix such as 500m, 100G or 1Gi",
    ),
    case(
        "volume size limit that is no quantity",
        "          containers:\n",
        "          volumes: [{name: tmp, emptyDir: {sizeLimit: 1GB}}]\n          containers:\n",
        "app.yaml:22: spec.parts[0].template.spec.volumes[0].emptyDir.sizeLimit: `1GB` is not a quantity: expected a number with an optional suffix such as 500m, 100G or 1Gi",
    ),
    case(
        "unknown field in an extra object of a built-in kind",
        "  parts:\n",
        "  extraObjects:\n    - apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: x}\n      dat: {a: b}\n  parts:\n",
        "app.yaml:19: spec.extraObjects[0].dat: unknown field `dat`; did you mean `data`?",
    ),
    case(
        "no containers",
        "          containers:\n            - name: zk\n              image: zookeeper:3.8\n              command: [\"run\", \"{{ part.replicas }}\"]\n",
        "          containers: []\n",
        "app.yaml:22: spec.parts[0].template.spec.containers: a part needs at least one container in template.spec.containers",
    ),
    case(
        "invalid quantity",
        "size: 1Gi",
        "size: 1GB",
        "app.yaml:29: spec.parts[0].state.persistent[0].size: `1GB` is not a quantity: expected a number with an optional suffix such as 500m, 100G or 1Gi",
    ),
    case(
        "zero size",
        "size: 1Gi",
        "size: 0Gi",
        "app.yaml:29: spec.parts[0].state.persistent[0].size: `0Gi` must be greater than zero",
    ),
    case(
        "duplicate volume",
        "            mountPath: /data\n",
        "            mountPath: /data\n          - name: data\n            size: 1Gi\n            mountPath: /data2\n",
        "app.yaml:31: spec.parts[0].state.persistent[1].name: duplicate volume name `data` (first used at spec.parts[0].state.persistent[0].name)",
    ),
    case(
        "volumes with different retention",
        "            mountPath: /data\n",
        "            mountPath: /data\n            retention: {whenScaled: Delete, whenDeleted: Delete}\n          - name: keep\n            size: 1Gi\n            mountPath: /keep\n            retention: {whenScaled: Delete, whenDeleted: Retain}\n",
        "app.yaml:35: spec.parts[0].state.persistent[1].retention.whenDeleted: `Retain` differs from `Delete` of volume `data` (spec.parts[0].state.persistent[0].retention.whenDeleted); a StatefulSet has one retention policy for all its volumes",
    ),
    case(
        "volume without mount",
        "            mountPath: /data\n",
        "",
        "app.yaml:28: spec.parts[0].state.persistent[0].mountPath: a volume needs `mountPath` or `mounts`",
    ),
    case(
        "relative mount path",
        "mountPath: /data",
        "mountPath: data",
        "app.yaml:30: spec.parts[0].state.persistent[0].mountPath: `data` is not an absolute path: expected a path starting with / and without `..`",
    ),
    case(
        "mount for an unknown container",
        "            mountPath: /data\n",
        "            mounts: [{path: /d, containers: [sidecar]}]\n",
        "app.yaml:30: spec.parts[0].state.persistent[0].mounts[0].containers[0]: unknown container `sidecar`; containers: zk",
    ),
    case(
        "bad access mode",
        "            size: 1Gi\n",
        "            size: 1Gi\n            accessModes: [RWO]\n",
        "app.yaml:30: spec.parts[0].state.persistent[0].accessModes[0]: unknown access mode `RWO`; expected one of ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod",
    ),
    case(
        "duplicate mount path",
        "path: /conf/zoo.cfg",
        "path: /data",
        "app.yaml:34: spec.parts[0].state.config.files[0].path: duplicate mount path `/data` (first used at spec.parts[0].state.persistent[0].mountPath)",
    ),
    case(
        "bad file mode",
        "              path: /conf/zoo.cfg\n",
        "              path: /conf/zoo.cfg\n              mode: \"0999\"\n",
        "app.yaml:35: spec.parts[0].state.config.files[0].mode: expected an octal file mode such as \"0644\" or \"0755\", found \"0999\"",
    ),
    case(
        "unknown template variable",
        "{{ part.replicas }}\"]",
        "{{ replica_count }}\"]",
        "app.yaml:25: spec.parts[0].template.spec.containers[0].command[1]: unknown template variable `replica_count`; known variables: app, part, ports, members, endpoints, files, volumes, paths, parts, params",
    ),
    case(
        "unknown template attribute",
        "{{ m.address }}",
        "{{ m.adress }}",
        "app.yaml:35: spec.parts[0].state.config.files[0].content: template line 1: undefined `m.adress`; `m` has: address, fqdn, host, name, ordinal",
    ),
    case(
        "unknown port in a template",
        "{{ part.replicas }}\"]",
        "{{ ports.clientt }}\"]",
        "app.yaml:25: spec.parts[0].template.spec.containers[0].command[1]: template line 1: undefined `ports.clientt`; `ports` has: client",
    ),
    case(
        "a flag of the wrong type",
        "      replicas: 3\n",
        "      replicas: 3\n      scheduling: {disruptionBudget: {enabled: maybe}}\n",
        "app.yaml:18: spec.parts[0].scheduling.disruptionBudget.enabled: expected true or false, found \"maybe\"",
    ),
    case(
        "a word where a list belongs",
        "      replicas: 3\n",
        "      replicas: 3\n      local: {packages: yes}\n",
        "app.yaml:18: spec.parts[0].local.packages: expected a list, found \"yes\"",
    ),
    case(
        "a string where a mapping belongs",
        "      services:\n        - name: client\n",
        "      services:\n        - name: client\n          annotations: none\n",
        "app.yaml:46: spec.parts[0].services[0].annotations: expected a mapping, found \"none\"",
    ),
    case(
        "a declared default breaks a rule",
        "      type: int\n",
        "      type: int\n      default: 1001\n",
        "app.yaml:10: spec.parts[0].replicas: expected a member count from 0 to 1000, found 1001",
    ),
    case(
        "template syntax error",
        "{% endfor %}",
        "{% endfo %}",
        "app.yaml:35: spec.parts[0].state.config.files[0].content: template line 2: syntax error: unknown statement endfo",
    ),
    case(
        "duplicate port name",
        "              port: 2181\n",
        "              port: 2181\n            - name: client\n              port: 2182\n",
        "app.yaml:42: spec.parts[0].state.topology.ports[1].name: duplicate port name `client` (first used at spec.parts[0].state.topology.ports[0].name)",
    ),
    case(
        "duplicate port number",
        "              port: 2181\n",
        "              port: 2181\n            - name: other\n              port: 2181\n",
        "app.yaml:43: spec.parts[0].state.topology.ports[1].port: duplicate port number `2181/TCP` (first used at spec.parts[0].state.topology.ports[0].port)",
    ),
    case(
        "port out of range",
        "port: 2181",
        "port: 70000",
        "app.yaml:41: spec.parts[0].state.topology.ports[0].port: expected a port from 1 to 65535, found 70000",
    ),
    case(
        "port name too long",
        "- name: client\n              port",
        "- name: client-connections\n              port",
        "app.yaml:40: spec.parts[0].state.topology.ports[0].name: `client-connections` is not a valid port name: expected at most 15 lowercase letters, digits and '-', with at least one letter",
    ),
    case(
        "duplicate role",
        "            - name: leader\n",
        "            - name: leader\n            - name: leader\n",
        "app.yaml:44: spec.parts[0].state.topology.roles[1].name: duplicate role name `leader` (first used at spec.parts[0].state.topology.roles[0].name)",
    ),
    case(
        "service selects an undeclared role",
        "          ports: [client]\n",
        "          ports: [client]\n          role: primary\n",
        "app.yaml:47: spec.parts[0].services[0].role: unknown role `primary`; declared roles: leader",
    ),
    case(
        "service exposes an undeclared port",
        "ports: [client]",
        "ports: [admin]",
        "app.yaml:46: spec.parts[0].services[0].ports[0]: unknown port `admin`; declared ports: client",
    ),
    case(
        "session timeout without affinity",
        "      services:\n",
        "        session: {timeoutSeconds: 30}\n      services:\n",
        "app.yaml:44: spec.parts[0].state.session.timeoutSeconds: a timeout needs affinity ClientIP",
    ),
    case(
        "endpoint on an undeclared port",
        "      services:\n",
        "        connection: {endpoints: [{port: grpc}]}\n      services:\n",
        "app.yaml:44: spec.parts[0].state.connection.endpoints[0].port: unknown port `grpc`; declared ports: client",
    ),
    case(
        "partition above replicas",
        "      services:\n",
        "      update: {partition: 4}\n      services:\n",
        "app.yaml:44: spec.parts[0].update.partition: expected a partition from 0 to the replica count 3, found 4",
    ),
    case(
        "bad maxUnavailable",
        "      services:\n",
        "      update: {maxUnavailable: \"150%\"}\n      services:\n",
        "app.yaml:44: spec.parts[0].update.maxUnavailable: expected a number of members (at least 1) or a percentage such as \"25%\", found \"150%\"",
    ),
    case(
        "role-aware without roles",
        "          roles:\n            - name: leader\n      services:\n        - name: client\n          ports: [client]\n",
        "      update: {strategy: RoleAware}\n",
        "app.yaml:42: spec.parts[0].update.strategy: RoleAware updates need roles: declare them in state.topology.roles",
    ),
    case(
        "role service without a role probe",
        "          ports: [client]\n",
        "          ports: [client]\n          role: leader\n",
        "app.yaml:47: spec.parts[0].services[0].role: a Service selecting role `leader` needs members' roles, but spec.parts[0].state.topology.roleProbe is not declared: without it no member is ever selected",
    ),
    case(
        "two writable roles",
        "            - name: leader\n",
        "            - name: leader\n              writable: true\n            - name: primary\n              writable: true\n",
        "app.yaml:46: spec.parts[0].state.topology.roles[1].writable: `primary` is a second writable role (`leader` at spec.parts[0].state.topology.roles[0] is one): set spec.parts[0].state.topology.multipleWriters: true if members really take writes in both roles",
    ),
    case(
        "param path points nowhere",
        "path: spec.parts[0].replicas",
        "path: spec.parts[2].replicas",
        "app.yaml:8: spec.params[0].path: `spec.parts[2].replicas` points nowhere: `spec.parts[2]` does not exist",
    ),
    case(
        "param path outside the spec",
        "path: spec.parts[0].replicas",
        "path: metadata.name",
        "app.yaml:8: spec.params[0].path: `metadata.name` points outside the spec: a parameter path starts with `spec.`",
    ),
    case(
        "duplicate param key",
        "    - key: tier\n",
        "    - key: replicas\n",
        "app.yaml:10: spec.params[1].key: duplicate parameter key `replicas` (also spec.params[0])",
    ),
    case(
        "enum default not allowed",
        "default: gold",
        "default: bronze",
        "app.yaml:14: spec.params[1].default: expected one of gold, silver, found \"bronze\"",
    ),
    case(
        "bad extra object",
        "  parts:\n",
        "  extraObjects:\n    - kind: ConfigMap\n      metadata: {name: x}\n  parts:\n",
        "app.yaml:16: spec.extraObjects[0].apiVersion: an extra object needs `apiVersion`",
    ),
];

const VALUE_CASES: &[Case] = &[
    Case {
        name: "unknown value key",
        replace: "",
        with: "",
        values: "replicas: 3\nreplica: 4\n",
        sets: &[],
        expected: "values.yaml:2: replica: unknown parameter `replica`; known parameters: replicas, tier",
    },
    Case {
        name: "value of the wrong type",
        replace: "",
        with: "",
        values: "replicas: five\n",
        sets: &[],
        expected: "values.yaml:1: replicas: expected a whole number, found \"five\"",
    },
    Case {
        name: "enum value not allowed",
        replace: "",
        with: "",
        values: "\ntier: bronze\n",
        sets: &[],
        expected: "values.yaml:2: tier: expected one of gold, silver, found \"bronze\"",
    },
    Case {
        name: "set without equals",
        replace: "",
        with: "",
        values: "",
        sets: &["replicas"],
        expected: "--set: `replicas` must have the form key=value",
    },
    Case {
        name: "set of the wrong type",
        replace: "",
        with: "",
        values: "",
        sets: &["replicas=5x"],
        expected: "--set: replicas: expected a whole number, found \"5x\"",
    },
    Case {
        name: "values file not a mapping",
        replace: "",
        with: "",
        values: "- 1\n",
        sets: &[],
        expected: "values.yaml:1: a values file must be a mapping of parameter keys to values",
    },
    Case {
        name: "value through a param breaks a rule",
        replace: "",
        with: "",
        values: "",
        sets: &["replicas=-3"],
        expected: "--set replicas=-3: spec.parts[0].replicas: expected a member count from 0 to 1000, found -3",
    },
    Case {
        name: "value from a values file breaks a rule",
        replace: "",
        with: "",
        values: "\nreplicas: -2\n",
        sets: &[],
        expected: "values.yaml:2: spec.parts[0].replicas: expected a member count from 0 to 1000, found -2",
    },
    Case {
        name: "value from --set breaks a rule",
        replace: "",
        with: "",
        values: "replicas: 3\n",
        sets: &["replicas=1001"],
        expected: "--set replicas=1001: spec.parts[0].replicas: expected a member count from 0 to 1000, found 1001",
    },
    Case {
        name: "value from --set has the wrong type for its path",
        replace: "      type: int\n",
        with: "      type: string\n",
        values: "",
        sets: &["replicas=three"],
        expected: "--set replicas=three: spec.parts[0].replicas: expected a whole number, found \"three\"",
    },
    Case {
        name: "bad quantity from a values file",
        replace: "      default: gold\n",
        with: "      default: gold\n    - key: size\n      path: spec.parts[0].state.persistent[0].size\n",
        values: "size: 1GB\n",
        sets: &[],
        expected: "values.yaml:1: spec.parts[0].state.persistent[0].size: `1GB` is not a quantity: expected a number with an optional suffix such as 500m, 100G or 1Gi",
    },
];

fn run(case: &Case) -> Result<(), String> {
    let text = if case.replace.is_empty() {
        BASE.to_string()
    } else {
        assert!(
            BASE.contains(case.replace),
            "case `{}` replaces text that is not in the base",
            case.name
        );
        BASE.replacen(case.replace, case.with, 1)
    };
    let values = if case.values.is_empty() {
        vec![]
    } else {
        vec![("values.yaml".to_string(), case.values.to_string())]
    };
    let inputs = Inputs {
        app_file: "app.yaml".into(),
        app_text: text,
        values,
        sets: case.sets.iter().map(|s| s.to_string()).collect(),
        namespace: None,
    };
    match load(&inputs) {
        Ok(_) => Err(format!(
            "case `{}`: accepted, expected: {}",
            case.name, case.expected
        )),
        Err(d) if d.0.iter().any(|x| x.to_string() == case.expected) => Ok(()),
        Err(d) => Err(format!(
            "case `{}`:\n  expected: {}\n  got:      {}",
            case.name,
            case.expected,
            d.to_string().replace('\n', "\n            ")
        )),
    }
}

#[test]
fn the_base_app_is_valid() {
    let inputs = Inputs {
        app_file: "app.yaml".into(),
        app_text: BASE.into(),
        ..Default::default()
    };
    load(&inputs).unwrap();
}

#[test]
fn every_invalid_case_gets_its_exact_diagnostic() {
    assert!(CASES.len() + VALUE_CASES.len() >= 30);
    let failures: Vec<String> = CASES
        .iter()
        .chain(VALUE_CASES)
        .filter_map(|c| run(c).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len() + VALUE_CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = BASE
        .replacen("size: 1Gi", "size: 1GB", 1)
        .replacen("port: 2181", "port: 0", 1)
        .replacen("ports: [client]", "ports: [admin]", 1);
    let inputs = Inputs {
        app_file: "app.yaml".into(),
        app_text: text,
        ..Default::default()
    };
    assert_eq!(load(&inputs).unwrap_err().0.len(), 3);
}
