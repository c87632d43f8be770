"""Serving: Predict API clients (gRPC, REST), a local dev PredictionService, configs."""
