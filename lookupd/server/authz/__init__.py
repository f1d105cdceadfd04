"""lookupd as Envoy's external authorizer (``envoy.service.auth.v3.Authorization/Check``)."""
