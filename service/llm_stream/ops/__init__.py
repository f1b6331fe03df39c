"""Operations: metrics, tracing, logs and the ops HTTP endpoint."""
