//! `systemd` probe and the D-Bus client it shares with `process` checks of
//! a unit's main PID: read a unit's `ActiveState`/`SubState` or a
//! service's `MainPID` from systemd over the system bus (zbus), and
//! [`UnitClient::watch`] the unit's `PropertiesChanged` signals so that a
//! unit stopping or failing wakes the check at once.
//!
//! The bus is the system bus (`DBUS_SYSTEM_BUS_ADDRESS` if set, else
//! `/run/dbus/system_bus_socket`), connected on first use and again after
//! the connection broke. Each probe asks systemd afresh; signals only say
//! when to ask. The pure parts ([`unit_path`], [`unit_verdict`]) have no
//! bus. Nothing here decides a verdict beyond one probe's success.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use zbus::message::Type as MessageType;
use zbus::zvariant::OwnedValue;
use zbus::{Connection, MatchRule, MessageStream};

use super::Probed;

const DEST: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER_IFACE: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES_IFACE: &str = "org.freedesktop.DBus.Properties";
/// The interface of every unit (`ActiveState`, `SubState`, `LoadState`).
pub const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
/// The interface of service units (`MainPID`).
pub const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";

/// systemd's object path of a unit: `/org/freedesktop/systemd1/unit/`
/// and the name with every byte that is not an ASCII letter or digit
/// written as `_` and two lower-case hex digits (`nginx.service` →
/// `nginx_2eservice`).
pub fn unit_path(unit: &str) -> String {
    let mut p = String::from("/org/freedesktop/systemd1/unit/");
    if unit.is_empty() {
        p.push('_');
    }
    for b in unit.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(char::from(b));
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

/// A unit is healthy while it is `active` (or `reloading`, which is active
/// and reloading its configuration). `activating`, `deactivating`,
/// `inactive` and `failed` are not; neither is a unit systemd does not
/// know (`load` is its `LoadState`, only consulted for the detail).
pub fn unit_verdict(unit: &str, active: &str, sub: &str, load: Option<&str>) -> Probed {
    let detail = format!("{unit} {active} ({sub})");
    match (active, load) {
        ("active" | "reloading", _) => Ok(detail),
        (_, Some(l)) if l != "loaded" => Err(format!("{unit} {l}")),
        _ => Err(detail),
    }
}

/// A connection to the system bus, opened on first use and again after
/// it broke. Cheap to clone (the clones share the connection).
#[derive(Clone, Default)]
pub struct Bus {
    conn: Arc<tokio::sync::Mutex<Option<Connection>>>,
}

impl Bus {
    async fn connection(&self) -> zbus::Result<Connection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Connection::system().await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Drops the connection after an error that is not systemd's own
    /// answer, so the next use reconnects.
    async fn failed(&self, err: &zbus::Error) {
        if !matches!(err, zbus::Error::MethodError(..) | zbus::Error::FDO(_)) {
            *self.conn.lock().await = None;
        }
    }
}

/// One unit, over a shared [`Bus`].
#[derive(Clone)]
pub struct UnitClient {
    pub unit: String,
    path: String,
    bus: Bus,
}

impl UnitClient {
    pub fn new(unit: &str) -> UnitClient {
        UnitClient {
            unit: unit.to_string(),
            path: unit_path(unit),
            bus: Bus::default(),
        }
    }

    /// One property of the unit, read afresh (no cache).
    async fn property<T>(&self, iface: &str, name: &str) -> Result<T, String>
    where
        T: TryFrom<OwnedValue>,
        T::Error: std::fmt::Display,
    {
        let result = async {
            let conn = self.bus.connection().await?;
            let reply = conn
                .call_method(
                    Some(DEST),
                    self.path.as_str(),
                    Some(PROPERTIES_IFACE),
                    "Get",
                    &(iface, name),
                )
                .await?;
            reply.body().deserialize::<OwnedValue>()
        }
        .await;
        match result {
            Ok(v) => T::try_from(v).map_err(|e| format!("systemd: {name} of {}: {e}", self.unit)),
            Err(e) => {
                self.bus.failed(&e).await;
                Err(format!(
                    "systemd: {name} of {}: {}",
                    self.unit,
                    describe(&e)
                ))
            }
        }
    }

    /// The `systemd` probe. Details: `nginx.service active (running)`,
    /// `nginx.service deactivating (stop-sigterm)`,
    /// `nginx.service failed (failed)`, `nginx.service not-found`.
    pub async fn probe(&self) -> Probed {
        let (active, sub) = tokio::join!(
            self.property::<String>(UNIT_IFACE, "ActiveState"),
            self.property::<String>(UNIT_IFACE, "SubState"),
        );
        let (active, sub) = (active?, sub?);
        let load = if matches!(active.as_str(), "active" | "reloading") {
            None
        } else {
            self.property::<String>(UNIT_IFACE, "LoadState").await.ok()
        };
        unit_verdict(&self.unit, &active, &sub, load.as_deref())
    }

    /// The service's main PID; 0 when it has none (not running).
    pub async fn main_pid(&self) -> Result<u32, String> {
        self.property::<u32>(SERVICE_IFACE, "MainPID").await
    }

    /// Follows the unit's `PropertiesChanged` signals and calls
    /// `wake.notify_one()` for each, and each time the subscription is
    /// (re)made. If the bus cannot be reached, retries every `retry`
    /// (the check keeps its interval meanwhile). Runs until cancelled.
    pub async fn watch(&self, wake: Arc<Notify>, retry: Duration) {
        let mut warned = false;
        loop {
            match self.subscribe().await {
                Ok(mut stream) => {
                    tracing::debug!(unit = %self.unit, "subscribed to unit changes");
                    warned = false;
                    wake.notify_one();
                    while let Some(msg) = stream.next().await {
                        match msg {
                            Ok(_) => wake.notify_one(),
                            Err(e) => {
                                self.bus.failed(&e).await;
                                break;
                            }
                        }
                    }
                    // The stream ends when the connection is gone.
                    *self.bus.conn.lock().await = None;
                    tracing::debug!(unit = %self.unit, "unit subscription ended");
                }
                Err(e) => {
                    self.bus.failed(&e).await;
                    if warned {
                        tracing::debug!(unit = %self.unit, error = %describe(&e), "still cannot subscribe to unit changes");
                    } else {
                        tracing::warn!(unit = %self.unit, error = %describe(&e), "cannot subscribe to unit changes over D-Bus; the check falls back to its interval");
                        warned = true;
                    }
                }
            }
            wake.notify_one();
            tokio::time::sleep(retry).await;
        }
    }

    async fn subscribe(&self) -> zbus::Result<MessageStream> {
        let conn = self.bus.connection().await?;
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(DEST)?
            .path(self.path.as_str())?
            .interface(PROPERTIES_IFACE)?
            .member("PropertiesChanged")?
            .build();
        let stream = MessageStream::for_match_rule(rule, &conn, Some(64)).await?;
        // systemd sends unit signals only while some client subscribed;
        // a second Subscribe on the same connection is refused, harmlessly.
        let _ = conn
            .call_method(
                Some(DEST),
                MANAGER_PATH,
                Some(MANAGER_IFACE),
                "Subscribe",
                &(),
            )
            .await;
        Ok(stream)
    }
}

/// A zbus error in a few words: D-Bus error replies by their name and
/// text, connection problems as such.
fn describe(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, text, _) => match text {
            Some(t) => format!("{}: {t}", name.as_str()),
            None => name.as_str().to_string(),
        },
        zbus::Error::InputOutput(io) => format!("cannot reach the system bus: {io}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_escape_like_systemd() {
        assert_eq!(
            unit_path("nginx.service"),
            "/org/freedesktop/systemd1/unit/nginx_2eservice"
        );
        assert_eq!(
            unit_path("getty@tty1.service"),
            "/org/freedesktop/systemd1/unit/getty_40tty1_2eservice"
        );
        assert_eq!(
            unit_path("a-b_c.socket"),
            "/org/freedesktop/systemd1/unit/a_2db_5fc_2esocket"
        );
        assert_eq!(unit_path(""), "/org/freedesktop/systemd1/unit/_");
    }

    #[test]
    fn only_active_units_are_healthy() {
        assert_eq!(
            unit_verdict("a.service", "active", "running", None),
            Ok("a.service active (running)".into())
        );
        assert!(unit_verdict("a.service", "reloading", "reload", None).is_ok());
        assert_eq!(
            unit_verdict("a.service", "deactivating", "stop-sigterm", Some("loaded")),
            Err("a.service deactivating (stop-sigterm)".into())
        );
        assert_eq!(
            unit_verdict("a.service", "failed", "failed", Some("loaded")),
            Err("a.service failed (failed)".into())
        );
        assert!(unit_verdict("a.service", "activating", "start", None).is_err());
        assert_eq!(
            unit_verdict("nope.service", "inactive", "dead", Some("not-found")),
            Err("nope.service not-found".into())
        );
    }
}
