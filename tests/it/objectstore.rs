//! An S3-compatible server for the suite: moto in server mode (PyPI `moto[server]`, installed
//! into the test virtualenv by `scripts/test`), on a free port, with one bucket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::clients::python;
use crate::harness::TestServer;

/// A running moto S3 server with a bucket.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub bucket: String,
}

impl S3Server {
    /// Starts moto and creates `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let python = python();
        let moto = Path::new(&python).with_file_name("moto_server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (moto[server] from tests/clients/requirements.txt; run the \
                     suite with scripts/test): {e}",
                    moto.display()
                )
            });
        let server = S3Server {
            child,
            port,
            bucket: bucket.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match server.request("PUT", &format!("/{bucket}")) {
                Ok((200, _)) => break,
                Ok((status, body)) => panic!("creating bucket {bucket}: {status} {body}"),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("moto did not start on port {port}: {e}"),
            }
        }
        server
    }

    /// A plain HTTP/1.0 request; returns the status and body. (moto accepts unsigned requests.)
    fn request(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Every key in the bucket.
    pub fn keys(&self) -> Vec<String> {
        let (status, body) = self
            .request(
                "GET",
                &format!("/{}?list-type=2&max-keys=100000", self.bucket),
            )
            .expect("list bucket");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<IsTruncated>false</IsTruncated>"), "{body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split_once("</Key>"))
            .map(|(key, _)| {
                key.replace("&amp;", "&")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
            })
            .collect()
    }

    /// A deltagate server whose warehouse is `s3://<bucket>/<prefix>` on this server.
    pub fn deltagate(&self, prefix: &str, args: &[&str]) -> TestServer {
        let endpoint = format!("AWS_ENDPOINT_URL=http://127.0.0.1:{}", self.port);
        let mut all = vec![
            "--storage-option",
            &endpoint,
            "--storage-option",
            "AWS_ALLOW_HTTP=true",
            "--storage-option",
            "AWS_ACCESS_KEY_ID=deltagate",
            "--storage-option",
            "AWS_SECRET_ACCESS_KEY=deltagate-secret",
            "--storage-option",
            "AWS_REGION=us-east-1",
        ];
        all.extend_from_slice(args);
        TestServer::start_at(Some(&format!("s3://{}/{prefix}", self.bucket)), &all)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
