"""The embedded local stack: Tansu (Kafka protocol) and moto (S3 API) as background processes."""
