"""Typed stack configuration: every `mlserve:*` key, its type, its secure default and its rules.

Stack files hold structured values (`pulumi config set --path 'gpuNodeGroups[0].maxSize' 3`). They
are parsed once, in full, into frozen pydantic models before any resource is registered. Every
problem is reported in one error, one line per problem, each naming the full key path, e.g.

    mlserve:gpuNodeGroups[0].maxSize: must be >= minSize (2), got 1

Unknown keys are errors: a typo must never fall back to a default silently.

One module per concern, each importing only the ones above it in this list (docs/layers.md).
This package re-exports nothing: import a name from its module.

- `errors`: ConfigError, the one error type: `.located` holds its (location, message) problems,
  `.problems` the same rendered `<location>: <message>`; NAMESPACE, `key_path`, `render`.
- `quantities`: `cpu_millicores`, `memory_mib` (Kubernetes quantities as numbers).
- `types`: ConfigModel (the sections' base class) and the annotated types they share, defined
  once: Cidr, DnsLabel, ModelName, IamPrincipalArn, PromotionReaderArn, CpuQuantity,
  MemoryQuantity, HttpsSecret, KnownRegion, QuotedString; CONTENT_HASH (a model version, from
  modelrepo/layout.py), LOG_RETENTION_DAYS.
- `stack_file`: `duplicate_keys`, `stack_file_problems` (keys listed twice in a stack file).
- one module per section:
  - `network`: NetworkConfig, ExistingVpcConfig
  - `cluster`: ClusterConfig, REQUIRED_LOG_TYPES
  - `nodes`: SystemNodeGroupConfig, GpuNodeGroupConfig
  - `bucket`: ModelBucketConfig, ModelRepositoryConfig
  - `serving`: ModelServingConfig, ServedModelConfig, CanaryConfig, SeldonConfig
  - `platform`: PlatformConfig, PartConfig, IstioConfig, KServeConfig, MonitoringConfig,
    AlertsConfig, ClusterAutoscalerConfig
- `stack`: StackConfig, the whole namespace; SECRET_KEYS.
- `capacity`: what a model pod requests and what a node holds (`pod_requests`, `node_room`,
  `replicas_per_node`, `rollout_replicas`, `model_pool`), shared by the rules and the backends.
- `rules/`: the cross-section rules, small named functions by theme (`platform`, `storage`,
  `models`, `capacity`, `prod`, `accounts`); `rules` itself: RULES (report order),
  `check_rules`, and from `rules/scope`: SectionUnavailable, InvalidSection, `is_valid`,
  `served_models`. RESERVED_NAMESPACES and HPA_DEFAULT_SCALE_DOWN_SECONDS are in `rules/models`.
- `validate`: `check` (a StackConfig and every problem), `parse` (or raise ConfigError),
  `validate_sections`.
- `runtime`: the only calls into the Pulumi runtime: `raw_project_config`,
  `secret_project_keys`, `this_stack_file_problems`.
"""
