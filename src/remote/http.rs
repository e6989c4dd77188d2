//! The outbound HTTP seam: every request to an S3 endpoint, object_store's
//! and our own signed ones, goes through a client built here. The
//! outbound-IP work (binding local addresses, connection caps) changes this
//! file only.

use crate::config::S3Config;
use object_store::client::{ClientOptions, HttpClient, HttpConnector};

/// Builds reqwest clients tuned for long streams: no whole-request timeout
/// (object_store's default of 30 s would cut a large GET), but a connect
/// timeout and a read timeout that fires only when the stream stalls.
#[derive(Debug, Clone)]
pub struct GatewayConnector {
    connect_timeout: std::time::Duration,
    request_timeout: std::time::Duration,
}

impl GatewayConnector {
    pub fn new(config: &S3Config) -> Self {
        GatewayConnector {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
        }
    }

    /// The client for our own signed requests (directory markers, listings).
    pub fn client(&self) -> object_store::Result<HttpClient> {
        self.connect(&ClientOptions::default())
    }
}

impl HttpConnector for GatewayConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.request_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}
