// Reads a JSON array of Kubernetes documents on stdin and validates every custom resource with the
// kubernetes-models class generated from its CRD's OpenAPI schema, chosen by apiVersion and kind.
// A resource of an operator's API group with no schema here (say, a Strimzi kind at an API version
// Strimzi no longer serves) is a problem too, not skipped. Prints one line per problem and exits 1
// if there is any; prints the kinds checked otherwise.
import { ScaledObject, TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { AlertmanagerConfig } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1alpha1";
import { Kafka, KafkaNodePool, KafkaTopic, KafkaUser } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1";

const MODELS = {
  "keda.sh/v1alpha1 ScaledObject": ScaledObject,
  "keda.sh/v1alpha1 TriggerAuthentication": TriggerAuthentication,
  "monitoring.coreos.com/v1 PrometheusRule": PrometheusRule,
  "monitoring.coreos.com/v1 ServiceMonitor": ServiceMonitor,
  "monitoring.coreos.com/v1alpha1 AlertmanagerConfig": AlertmanagerConfig,
  "kafka.strimzi.io/v1 Kafka": Kafka,
  "kafka.strimzi.io/v1 KafkaNodePool": KafkaNodePool,
  "kafka.strimzi.io/v1 KafkaTopic": KafkaTopic,
  "kafka.strimzi.io/v1 KafkaUser": KafkaUser,
};
const OPERATOR_GROUPS = ["keda.sh", "monitoring.coreos.com", "kafka.strimzi.io", "core.strimzi.io"];

let input = "";
for await (const chunk of process.stdin) input += chunk;
const problems = [];
const checked = {};
for (const doc of JSON.parse(input)) {
  const Model = MODELS[`${doc.apiVersion} ${doc.kind}`];
  const name = `${doc.apiVersion} ${doc.kind}/${doc.metadata?.name}`;
  if (!Model) {
    const group = String(doc.apiVersion).split("/")[0];
    if (OPERATOR_GROUPS.includes(group)) problems.push(`${name}: no CRD schema for this apiVersion and kind`);
    continue;
  }
  try {
    new Model(doc).validate();
    checked[doc.kind] = (checked[doc.kind] || 0) + 1;
  } catch (err) {
    problems.push(`${name}: ${err.message}`);
  }
}
if (problems.length) {
  console.log(problems.join("\n"));
  process.exit(1);
}
console.log(JSON.stringify(checked));
