//! A client of the agent API, used by `gossipctl` and by the end-to-end tests.
//!
//! It tries the configured agents in order and keeps the first that answers, so one agent down
//! does not stop an operator.

use std::net::SocketAddr;
use std::time::Duration;

use quinn::{Connection, Endpoint};

use crate::api::{Request, Response};
use crate::cluster::identity::{ANY_AGENT_SERVER_NAME, Credentials};
use crate::cluster::tls::{TlsError, interactive_client_config};
use crate::maintenance::{Maintenance, Mode};
use crate::trust::authority::encode;
use crate::trust::revocation::Revocation;
use crate::trust::seal::{Seal, Sealer};
use crate::trust::statement::{Map, statement};
use crate::wire::{WireError, read_frame_counted, write_frame};
use orchestrator::state::{Entry, Timestamp};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot open a local QUIC endpoint: {0}")]
    Endpoint(std::io::Error),
    #[error("no agent is configured")]
    NoAgents,
    #[error("no agent answered ({0})")]
    Unreachable(String),
    #[error("agent {agent}: {source}")]
    Wire {
        agent: SocketAddr,
        source: WireError,
    },
    #[error("agent {agent}: {source}")]
    Connection {
        agent: SocketAddr,
        source: quinn::ConnectionError,
    },
    #[error("agent {0} closed the request without answering")]
    NoAnswer(SocketAddr),
    #[error("cannot sign the write agent {agent} prepared: {reason}")]
    Seal { agent: SocketAddr, reason: String },
}

pub struct Client {
    endpoint: Endpoint,
    connection: Connection,
    agent: SocketAddr,
    /// Seals the writes agents prepare for it (an admin's deploys and deletions); `None` when
    /// the credentials' key cannot sign.
    sealer: Option<std::sync::Arc<Sealer>>,
}

impl Client {
    /// Connects to the first of `agents` that completes a mutually authenticated handshake and
    /// answers a ping.
    pub async fn connect(agents: &[SocketAddr], creds: &Credentials) -> Result<Self, ClientError> {
        Self::connect_within(agents, creds, CONNECT_TIMEOUT).await
    }

    /// [`Client::connect`], giving each agent `timeout` to answer.
    pub async fn connect_within(
        agents: &[SocketAddr],
        creds: &Credentials,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        if agents.is_empty() {
            return Err(ClientError::NoAgents);
        }
        let config = interactive_client_config(creds)?;
        let sealer = Sealer::new(creds).ok().map(std::sync::Arc::new);
        let mut failures = Vec::new();
        for &agent in agents {
            let bind: SocketAddr = if agent.is_ipv6() {
                "[::]:0".parse().expect("literal address")
            } else {
                "0.0.0.0:0".parse().expect("literal address")
            };
            let mut endpoint = Endpoint::client(bind).map_err(ClientError::Endpoint)?;
            endpoint.set_default_client_config(config.clone());
            let attempt = async {
                let connection = endpoint
                    .connect(agent, ANY_AGENT_SERVER_NAME)
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                let client = Client {
                    endpoint: endpoint.clone(),
                    connection,
                    agent,
                    sealer: sealer.clone(),
                };
                // TLS 1.3 lets a rejected client believe the handshake worked; the first
                // request tells for sure.
                client
                    .request(&Request::Ping)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(client)
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(e)) => failures.push(format!("{agent}: {e}")),
                Err(_) => failures.push(format!("{agent}: timed out")),
            }
        }
        Err(ClientError::Unreachable(failures.join("; ")))
    }

    pub fn agent(&self) -> SocketAddr {
        self.agent
    }

    /// Sends one request and returns its single response. When the agent answers with a
    /// write to seal (a deploy or a deletion), seals it with this client's key and commits it,
    /// and returns the commit's answer.
    pub async fn request(&self, request: &Request) -> Result<Response, ClientError> {
        match self.exchange(request).await? {
            Response::Seal { write } => {
                let statement = write
                    .statement()
                    .map_err(|e| self.seal_error(e.to_string()))?;
                let seal = self.seal(&statement)?;
                self.exchange(&Request::Commit {
                    write: Box::new(write),
                    seal,
                })
                .await
            }
            other => Ok(other),
        }
    }

    /// Revokes the certificate with `serial`, held by `name`: seals the revocation with this
    /// client's key (an admin's, or every agent refuses it) and hands it to the agent. `keep`
    /// lists the application writes sealed with it that stay valid.
    pub async fn revoke(
        &self,
        name: &str,
        serial: &str,
        keep: Vec<(String, Timestamp)>,
    ) -> Result<Response, ClientError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let revocation = Revocation {
            name: name.to_string(),
            revoked_at_ms: now,
            keep,
        };
        // A revocation is never overwritten, so the admin's own clock versions it.
        let version = Timestamp {
            wall_ms: now,
            logical: 0,
            node: self.sealer()?.name(),
        };
        let signed = statement(Map::Revocations, serial, &version, Some(&revocation))
            .map_err(|e| self.seal_error(e.to_string()))?;
        let seal = self.seal(&signed)?;
        let entry = Entry::live(revocation, version).sealed(encode(&seal));
        self.exchange(&Request::Revoke {
            serial: serial.to_string(),
            entry,
        })
        .await
    }

    /// Cordons, drains or uncordons `node`: an entry sealed with the admin's key, versioned by
    /// the agent's clock so that it sorts after every earlier one the agent has seen.
    pub async fn maintain(&self, node: &str, mode: Mode) -> Result<Response, ClientError> {
        let version = match self.exchange(&Request::Version).await? {
            Response::Version { version } => version,
            other => return Ok(other),
        };
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let value = Maintenance { mode, at_ms };
        let signed = statement(Map::Maintenance, node, &version, Some(&value))
            .map_err(|e| self.seal_error(e.to_string()))?;
        let seal = self.seal(&signed)?;
        let entry = Entry::live(value, version).sealed(encode(&seal));
        self.exchange(&Request::Maintain {
            node: node.to_string(),
            entry,
        })
        .await
    }

    fn seal_error(&self, reason: String) -> ClientError {
        ClientError::Seal {
            agent: self.agent,
            reason,
        }
    }

    fn sealer(&self) -> Result<&Sealer, ClientError> {
        self.sealer
            .as_deref()
            .ok_or_else(|| self.seal_error("this certificate's key cannot sign".into()))
    }

    /// Seals `statement` with this client's key.
    fn seal(&self, statement: &[u8]) -> Result<Seal, ClientError> {
        self.sealer()?
            .seal(statement)
            .map_err(|e| self.seal_error(e.to_string()))
    }

    async fn exchange(&self, request: &Request) -> Result<Response, ClientError> {
        let mut responses = self.stream(request).await?;
        responses
            .next()
            .await?
            .ok_or(ClientError::NoAnswer(self.agent))
    }

    /// Sends one request and returns the stream of its responses (for `logs`).
    pub async fn stream(&self, request: &Request) -> Result<Responses, ClientError> {
        let agent = self.agent;
        let (mut send, recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|source| ClientError::Connection { agent, source })?;
        write_frame(&mut send, request)
            .await
            .map_err(|source| ClientError::Wire { agent, source })?;
        let _ = send.finish();
        Ok(Responses::new(recv, agent))
    }

    /// Closes the connection politely so the agent frees it at once.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}

pub struct Responses {
    recv: quinn::RecvStream,
    agent: SocketAddr,
    bytes_read: u64,
}

impl Responses {
    pub fn new(recv: quinn::RecvStream, agent: SocketAddr) -> Self {
        Responses {
            recv,
            agent,
            bytes_read: 0,
        }
    }

    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        let next =
            read_frame_counted(&mut self.recv)
                .await
                .map_err(|source| ClientError::Wire {
                    agent: self.agent,
                    source,
                })?;
        Ok(next.map(|(response, bytes)| {
            self.bytes_read += bytes;
            response
        }))
    }

    /// The bytes of the responses read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}
