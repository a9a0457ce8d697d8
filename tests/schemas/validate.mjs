// Validates Kubernetes custom resources against the schemas shipped in @kubernetes-models/*.
// stdin: a JSON array of objects; stdout: a JSON array of {ok, error} in the same order.
// An apiVersion/kind with no schema here is an error, never a silent pass.
const PACKAGES = {
  "security.istio.io": "istio",
  "networking.istio.io": "istio",
  "telemetry.istio.io": "istio",
  "monitoring.coreos.com": "prometheus-operator",
  "cert-manager.io": "cert-manager",
  "acme.cert-manager.io": "cert-manager",
  "keda.sh": "keda",
};

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const objects = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const results = [];
for (const object of objects) {
  const [group, version] = String(object.apiVersion ?? "").split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version) {
    results.push({ ok: false, error: `no schema for ${object.apiVersion} ${object.kind}` });
    continue;
  }
  let Model;
  try {
    ({ [object.kind]: Model } = await import(
      `@kubernetes-models/${pkg}/${group}/${version}/${object.kind}`));
  } catch (e) {
    results.push({ ok: false, error: `no schema for ${object.apiVersion} ${object.kind}` });
    continue;
  }
  try {
    new Model(object).validate();
    results.push({ ok: true });
  } catch (e) {
    results.push({ ok: false, error: e.message });
  }
}
process.stdout.write(JSON.stringify(results));
