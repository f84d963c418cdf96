//! Connections to the database: the URI with its password, plain SQL for the catalog and the
//! slot's bookkeeping, and errors that say what to fix.

use pg_walstream::{PgReplicationConnection, ReplicationError};

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The server did not answer (down, wrong host or port).
    #[error("cannot reach Postgres at {address}: {message}")]
    Unreachable { address: String, message: String },
    /// The server refused the credentials.
    #[error(
        "Postgres at {address} refused the login of user {user:?}: {message}; check the URL's user and the password (the URL's, or ${password_env})"
    )]
    Authentication { address: String, user: String, password_env: String, message: String },
    /// A statement failed.
    #[error("Postgres at {address}: {message}")]
    Refused { address: String, message: String },
}

impl DatabaseError {
    /// Whether the failure may pass on its own (the server restarting): worth retrying.
    pub fn is_transient(&self) -> bool {
        matches!(self, DatabaseError::Unreachable { .. })
    }
}

/// Where and how to connect, with the password resolved.
#[derive(Debug, Clone)]
pub struct Database {
    /// The URI for plain SQL (no `replication=`).
    uri: String,
    /// `host:port/database`, for messages (never the password).
    pub address: String,
    user: String,
    password_env: String,
}

impl Database {
    /// The database at `url` (a `postgres:` source's or sink's); the password comes from the
    /// URL or the environment variable `password_env` (default `PGPASSWORD`).
    pub fn new(url: &str, password_env: Option<&str>) -> Database {
        let password_env = password_env.unwrap_or("PGPASSWORD").to_string();
        let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
        let (userinfo, location) = match rest.rsplit_once('@') {
            Some((userinfo, location)) => (Some(userinfo), location),
            None => (None, rest),
        };
        let user = userinfo.map(|u| u.split(':').next().unwrap_or_default().to_string()).unwrap_or_default();
        let has_password = userinfo.is_some_and(|u| u.contains(':'));
        let uri = match (userinfo, has_password, std::env::var(&password_env)) {
            (Some(userinfo), false, Ok(password)) => {
                let password = percent_encoding::utf8_percent_encode(&password, percent_encoding::NON_ALPHANUMERIC);
                format!("{scheme}://{userinfo}:{password}@{location}")
            }
            _ => url.to_string(),
        };
        let address = location.split('?').next().unwrap_or(location).to_string();
        Database { uri, address, user, password_env }
    }

    /// The URI for plain SQL, with the password.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The URI of a replication connection (logical, to this database).
    pub fn replication_uri(&self) -> String {
        let separator = if self.uri.contains('?') { '&' } else { '?' };
        format!("{}{separator}replication=database", self.uri)
    }

    /// A plain SQL connection.
    pub fn connect(&self) -> Result<Sql, DatabaseError> {
        PgReplicationConnection::connect(&self.uri)
            .map(|connection| Sql { connection, database: self.clone() })
            .map_err(|error| self.error(error))
    }

    /// The error of a failed connection or statement, classified.
    pub fn error(&self, error: ReplicationError) -> DatabaseError {
        let address = self.address.clone();
        match error {
            ReplicationError::Authentication(message) => DatabaseError::Authentication {
                address,
                user: self.user.clone(),
                password_env: self.password_env.clone(),
                message,
            },
            ReplicationError::TransientConnection(message)
            | ReplicationError::Timeout(message)
            | ReplicationError::ReplicationConnection(message) => DatabaseError::Unreachable { address, message },
            ReplicationError::Io(error) => DatabaseError::Unreachable { address, message: error.to_string() },
            ReplicationError::PermanentConnection(message) if looks_like_login_refusal(&message) => {
                DatabaseError::Authentication {
                    address,
                    user: self.user.clone(),
                    password_env: self.password_env.clone(),
                    message,
                }
            }
            ReplicationError::PermanentConnection(message) if looks_unreachable(&message) => {
                DatabaseError::Unreachable { address, message }
            }
            other => DatabaseError::Refused { address, message: other.to_string() },
        }
    }
}

fn looks_like_login_refusal(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("password") || message.contains("authentication")
}

fn looks_unreachable(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["connection refused", "could not connect", "shutting down", "starting up", "terminating connection", "closed"]
        .iter()
        .any(|m| message.contains(m))
}

/// A plain SQL connection (simple query protocol: values are quoted with [`literal`]).
pub struct Sql {
    connection: PgReplicationConnection,
    database: Database,
}

impl Sql {
    /// Run `sql`; every row, each value as text (`None` is NULL).
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DatabaseError> {
        let result = self.connection.exec(sql).map_err(|error| self.database.error(error))?;
        Ok((0..result.ntuples())
            .map(|row| (0..result.nfields()).map(|column| result.get_value(row, column)).collect())
            .collect())
    }

    /// Run a statement whose result does not matter.
    pub fn execute(&mut self, sql: &str) -> Result<(), DatabaseError> {
        self.query(sql).map(|_| ())
    }
}

/// `'text'` quoted as a SQL string literal. Postgres text cannot hold NUL, the one character
/// the quoting refuses: it is left out.
pub fn literal(text: &str) -> String {
    pg_walstream::quote_literal(&text.replace('\0', "")).expect("no NUL left to refuse")
}

/// `name` quoted as a SQL identifier (NUL left out, as for [`literal`]).
pub fn ident(name: &str) -> String {
    pg_walstream::quote_ident(&name.replace('\0', "")).expect("no NUL left to refuse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_comes_from_the_environment_when_the_url_has_none() {
        std::env::set_var("MESHHOST_TEST_PG_PASSWORD", "p@ss word");
        let database = Database::new("postgres://alice@db:5432/app?sslmode=disable", Some("MESHHOST_TEST_PG_PASSWORD"));
        assert_eq!(database.uri, "postgres://alice:p%40ss%20word@db:5432/app?sslmode=disable");
        assert_eq!(database.address, "db:5432/app");
        assert_eq!(database.replication_uri(), format!("{}&replication=database", database.uri));
        let given = Database::new("postgres://alice:secret@db/app", Some("MESHHOST_TEST_PG_PASSWORD"));
        assert_eq!(given.uri, "postgres://alice:secret@db/app");
        assert_eq!(given.replication_uri(), "postgres://alice:secret@db/app?replication=database");
    }
}
