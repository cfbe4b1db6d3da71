// Reads a JSON array of Kubernetes documents on stdin and validates every custom resource of a
// known kind with the kubernetes-models class generated from its CRD's OpenAPI schema.
// Prints one line per problem and exits 1 if there is any; prints the kinds checked otherwise.
import { ScaledObject, TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { KafkaTopic, KafkaUser } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2";

const MODELS = { ScaledObject, TriggerAuthentication, PrometheusRule, ServiceMonitor, KafkaTopic, KafkaUser };

let input = "";
for await (const chunk of process.stdin) input += chunk;
const problems = [];
const checked = {};
for (const doc of JSON.parse(input)) {
  const Model = MODELS[doc.kind];
  if (!Model) continue;
  try {
    new Model(doc).validate();
    checked[doc.kind] = (checked[doc.kind] || 0) + 1;
  } catch (err) {
    problems.push(`${doc.kind}/${doc.metadata?.name}: ${err.message}`);
  }
}
if (problems.length) {
  console.log(problems.join("\n"));
  process.exit(1);
}
console.log(JSON.stringify(checked));
