"""Facts about how Triton runs that the stack and the local server share."""

# Latency summaries (p50/p95/p99 per pod) on top of Triton's default counters: what the
# dashboards and the latency alert read. The local server uses the same flags, so tests can check
# every series the stack's PromQL names against a live scrape.
METRICS_ARGS: tuple[str, ...] = (
    "--metrics-config=summary_latencies=true",
    "--metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.95:0.01,0.99:0.001",
)
HTTP_PORT = 8080  # KServe's Triton runtime: --http-port=8080
METRICS_PORT = 8002
READY_PATH = "/v2/health/ready"
