#!/bin/sh
# Renders gateway/envoy.yaml, the gateway's whole Envoy config, from the base's policies.yaml: run by
# `make envoy-native-config` (and by tests/test_kubernetes.py, which fails when the committed
# file is not what this renders). Edit POLICY and UPSTREAM for your API.
#   sh deploy/kubernetes/overlays/envoy-native/render.sh [OUTPUT]
set -eu
POLICY=api-supported
# The API's Service, which Envoy passes allowed requests to (STRICT_DNS: a Service name).
UPSTREAM=api.default.svc.cluster.local:8080
# 0: Envoy sees the client's own address (its Service is a LoadBalancer with
# externalTrafficPolicy: Local). Behind N proxies that append X-Forwarded-For, use N.
TRUSTED_HOPS=0
here=deploy/kubernetes/overlays/envoy-native/gateway
cd "$(dirname "$0")/../../../.."
exec lookupd export envoy "$POLICY" \
    --policies deploy/kubernetes/base/policies.yaml \
    --mmdb /var/lib/lookupd/countries.mmdb \
    --trusted-hops "$TRUSTED_HOPS" \
    --bootstrap --listen 0.0.0.0:8000 --admin 127.0.0.1:9901 --upstream "$UPSTREAM" \
    -o "${1:-$here/envoy.yaml}"
