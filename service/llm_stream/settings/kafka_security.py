"""How every Kafka client connects: TLS and SASL (``llm_stream.kafka.connection`` builds the
clients from these)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class KafkaSecuritySettings(BaseModel):
    """Kafka security, the same for every process of a deployment."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client connects: SSL = TLS, SASL_* = with SASL."
    )
    sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"] | None
    ) = Field(None, description="Needed with SASL_PLAINTEXT and SASL_SSL, refused otherwise.")
    sasl_plain_username: str | None = Field(None, description="User of PLAIN and SCRAM.")
    sasl_plain_password: SecretStr | None = Field(None, description="Password of PLAIN and SCRAM.")
    sasl_oauth_provider: Literal["msk_iam", "oidc"] | None = Field(
        None,
        description="Where OAUTHBEARER tokens come from: msk_iam (Amazon MSK IAM, AWS "
        "credentials chain) or oidc (client credentials grant at sasl_oauth_token_url).",
    )
    sasl_oauth_aws_region: str | None = Field(
        None, description="Region of the MSK cluster (msk_iam); unset: AWS_REGION."
    )
    sasl_oauth_token_url: str | None = Field(None, description="OIDC token endpoint (oidc).")
    sasl_oauth_client_id: str | None = Field(None, description="OIDC client id (oidc).")
    sasl_oauth_client_secret: SecretStr | None = Field(
        None, description="OIDC client secret (oidc)."
    )
    sasl_oauth_scope: str | None = Field(None, description="OIDC scope to ask for (oidc).")
    ssl_cafile: Path | None = Field(
        None,
        description="PEM CA bundle the brokers' certificates are checked against; unset: "
        "the system's CAs.",
    )
    ssl_certfile: Path | None = Field(
        None, description="PEM client certificate, for brokers that require one (mutual TLS)."
    )
    ssl_keyfile: Path | None = Field(None, description="PEM private key of ssl_certfile.")
    ssl_key_password: SecretStr | None = Field(None, description="Passphrase of ssl_keyfile.")
    allow_cleartext_credentials: bool = Field(
        False,
        description="Let Kafka SASL credentials (PLAIN, SCRAM, OAUTHBEARER over "
        "SASL_PLAINTEXT) and the OIDC client secret (an http:// token URL) cross the network "
        "unencrypted to hosts beyond loopback; off: refused at start.",
    )
    enable_idempotence: bool = Field(False, description="Idempotent producer (InitProducerId).")
