//! Turning a [`MongoConnection`] into a driver [`Client`], with connection
//! errors mapped and scrubbed.

use backup_core::Result;
use mongodb::Client;
use mongodb::options::{ClientOptions, Credential};

use crate::conn::{DEFAULT_SERVER_SELECTION_TIMEOUT, MongoConnection};
use crate::error::connect_error;

impl MongoConnection {
    /// Connects (lazily: the first operation selects a server). SRV records
    /// are resolved here.
    pub(crate) async fn client(&self) -> Result<Client> {
        let mut options = ClientOptions::parse(self.uri().expose())
            .await
            .map_err(|e| connect_error(&e, self))?;
        if options.app_name.is_none() {
            options.app_name = Some("backup-mongo".to_string());
        }
        if let Some(timeout) = self.server_selection_timeout() {
            options.server_selection_timeout = Some(timeout);
        } else if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(DEFAULT_SERVER_SELECTION_TIMEOUT);
        }
        let password = self.explicit_password();
        if password.is_some() || self.username().is_some() || self.auth_source().is_some() {
            let mut credential = options
                .credential
                .take()
                .unwrap_or_else(Credential::default);
            if let Some(username) = self.username() {
                credential.username = Some(username.to_string());
            }
            if let Some(password) = password {
                credential.password = Some(password.expose().to_string());
            }
            if let Some(source) = self.auth_source() {
                credential.source = Some(source.to_string());
            }
            if credential.username.is_some() || credential.password.is_some() {
                options.credential = Some(credential);
            }
        }
        Client::with_options(options).map_err(|e| connect_error(&e, self))
    }
}
