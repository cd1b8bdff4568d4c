//! Running one check of a probe against a replica: the I/O shell around [`super::tracker`].

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use orchestrator::{HttpHeader, ProbeAction};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Where a replica's probes run.
#[derive(Clone)]
pub enum Target {
    /// A child process of the agent: `exec` runs on the node with the replica's environment
    /// and working directory; network checks go to the node's address (`GOSSIP_NODE_IP`,
    /// where a service's replicas listen), or `127.0.0.1` when nothing listens there, unless
    /// the probe names a host.
    Host {
        env: Vec<(String, String)>,
        working_dir: Option<String>,
    },
    /// A container: `exec` runs inside it through the engine; network checks go to the
    /// container's own address.
    Container {
        docker: Docker,
        name: String,
        address: Option<IpAddr>,
    },
}

/// The most output of an exec check kept for its message.
const OUTPUT_KEPT: usize = 512;

/// Runs `action` once against `target`; `Err` says why it failed.
pub async fn check(target: &Target, action: &ProbeAction, timeout: Duration) -> Result<(), String> {
    let run = async {
        match action {
            ProbeAction::Exec { command } => match target {
                Target::Host { env, working_dir } => {
                    exec_on_host(command, env, working_dir.as_deref()).await
                }
                Target::Container { docker, name, .. } => {
                    exec_in_container(docker, name, command).await
                }
            },
            ProbeAction::TcpSocket { port, host } => {
                let mut outcome = Err(String::new());
                for host in hosts_of(target, host.as_deref())? {
                    outcome = TcpStream::connect((host.as_str(), *port))
                        .await
                        .map(drop)
                        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"));
                    if outcome.is_ok() {
                        break;
                    }
                }
                outcome
            }
            ProbeAction::HttpGet {
                path,
                port,
                host,
                headers,
            } => {
                let mut outcome = Err(String::new());
                for host in hosts_of(target, host.as_deref())? {
                    outcome = http_get(&host, *port, path, headers).await;
                    // Only a refused connection moves on: an answer is the replica's.
                    if !outcome
                        .as_ref()
                        .is_err_and(|e| e.contains("cannot connect"))
                    {
                        break;
                    }
                }
                outcome
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs_f64())),
    }
}

/// Where a network check goes, in the order to try.
fn hosts_of(target: &Target, asked: Option<&str>) -> Result<Vec<String>, String> {
    if let Some(host) = asked {
        return Ok(vec![host.to_string()]);
    }
    match target {
        Target::Host { env, .. } => {
            let node_ip = env
                .iter()
                .find(|(name, _)| name == "GOSSIP_NODE_IP")
                .map(|(_, ip)| ip.clone())
                .filter(|ip| ip != "127.0.0.1");
            Ok(node_ip
                .into_iter()
                .chain(["127.0.0.1".to_string()])
                .collect())
        }
        Target::Container { address, name, .. } => address
            .map(|a| vec![a.to_string()])
            .ok_or_else(|| format!("container {name} has no address")),
    }
}

async fn exec_on_host(
    command: &[String],
    env: &[(String, String)],
    working_dir: Option<&str>,
) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = working_dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", command[0]))?;
    let mut output = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = (&mut stdout)
            .take(OUTPUT_KEPT as u64)
            .read_to_end(&mut output)
            .await;
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = (&mut stderr)
            .take(OUTPUT_KEPT as u64)
            .read_to_end(&mut output)
            .await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("cannot wait for {:?}: {e}", command[0]))?;
    if status.success() {
        Ok(())
    } else {
        Err(exit_message(status.code().map(i64::from), &output))
    }
}

async fn exec_in_container(docker: &Docker, name: &str, command: &[String]) -> Result<(), String> {
    let options = CreateExecOptions {
        cmd: Some(command.to_vec()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker
        .create_exec(name, options)
        .await
        .map_err(|e| format!("cannot exec in container {name}: {e}"))?;
    let started = docker
        .start_exec(&exec.id, None::<StartExecOptions>)
        .await
        .map_err(|e| format!("cannot start exec in container {name}: {e}"))?;
    let mut output = Vec::new();
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = started
    {
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            if output.len() < OUTPUT_KEPT {
                output.extend_from_slice(&chunk.into_bytes());
            }
        }
    }
    let inspected = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(|e| format!("cannot inspect exec in container {name}: {e}"))?;
    match inspected.exit_code {
        Some(0) => Ok(()),
        code => Err(exit_message(code, &output)),
    }
}

fn exit_message(code: Option<i64>, output: &[u8]) -> String {
    let text = String::from_utf8_lossy(&output[..output.len().min(OUTPUT_KEPT)]);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let status = code.map_or("a signal".to_string(), |c| format!("status {c}"));
    if last.is_empty() {
        format!("exited with {status}")
    } else {
        format!("exited with {status}: {}", last.trim())
    }
}

/// `GET path` over HTTP/1.1; 200 to 399 passes, as in Kubernetes.
async fn http_get(host: &str, port: u16, path: &str, headers: &[HttpHeader]) -> Result<(), String> {
    let url = format!("http://{host}:{port}{path}");
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("GET {url}: cannot connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let driver = tokio::spawn(connection);
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "gossipd-probe");
    for header in headers {
        request = request.header(header.name.as_str(), header.value.as_str());
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let response = sender.send_request(request).await;
    driver.abort();
    let status = response.map_err(|e| format!("GET {url}: {e}"))?.status();
    if (200..400).contains(&status.as_u16()) {
        Ok(())
    } else {
        Err(format!("GET {url}: {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Target {
        Target::Host {
            env: vec![("PROBE_WORD".into(), "healthy".into())],
            working_dir: None,
        }
    }

    fn exec(script: &str) -> ProbeAction {
        ProbeAction::Exec {
            command: vec!["sh".into(), "-c".into(), script.into()],
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn exec_passes_on_status_zero_and_says_why_it_failed() {
        assert_eq!(
            check(&host(), &exec("test \"$PROBE_WORD\" = healthy"), SECOND).await,
            Ok(())
        );
        let failed = check(&host(), &exec("echo not yet >&2; exit 3"), SECOND).await;
        assert_eq!(failed, Err("exited with status 3: not yet".to_string()));
        let slow = check(&host(), &exec("sleep 5"), Duration::from_millis(200)).await;
        assert_eq!(slow, Err("timed out after 0.2s".to_string()));
    }

    #[tokio::test]
    async fn tcp_passes_when_the_port_accepts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let probe = ProbeAction::TcpSocket { port, host: None };
        assert_eq!(check(&host(), &probe, SECOND).await, Ok(()));
        drop(listener);
        let refused = check(&host(), &probe, SECOND).await.unwrap_err();
        assert!(
            refused.starts_with("cannot connect to 127.0.0.1:"),
            "{refused}"
        );
    }

    /// A one-shot HTTP server answering `status` to whatever it is asked; returns its port
    /// and the request it read.
    async fn serve_once(status: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 4096];
            let n = socket.read(&mut request).await.unwrap();
            let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        (port, task)
    }

    #[tokio::test]
    async fn http_passes_on_2xx_and_3xx_and_sends_the_headers() {
        let (port, seen) = serve_once("204 No Content").await;
        let probe = ProbeAction::HttpGet {
            path: "/healthz".into(),
            port,
            host: None,
            headers: vec![HttpHeader {
                name: "X-Probe".into(),
                value: "gossipd".into(),
            }],
        };
        assert_eq!(check(&host(), &probe, SECOND).await, Ok(()));
        let request = seen.await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /healthz http/1.1"), "{request}");
        assert!(request.contains("x-probe: gossipd"), "{request}");

        let (port, _) = serve_once("503 Service Unavailable").await;
        let probe = ProbeAction::HttpGet {
            path: "/".into(),
            port,
            host: None,
            headers: vec![],
        };
        let failed = check(&host(), &probe, SECOND).await.unwrap_err();
        assert!(failed.ends_with("503 Service Unavailable"), "{failed}");
    }
}
