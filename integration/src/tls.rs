//! TLS for tests: a private CA and server certificates made with the
//! `openssl` command at test time, and `stunnel` as the TLS terminator in
//! front of a plain-HTTP listener (as an operator deploys it in front of
//! anypop's API). Owns files in the directory it is given and the stunnel
//! process (killed on drop); it must not touch anything else.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{run, wait_until, write_file, Anypop};

/// The programs this module runs.
pub const TOOLS: [&str; 2] = ["openssl", "stunnel4"];

/// A private CA in `dir`: `<name>.pem` (certificate) and `<name>.key`.
pub struct Ca {
    dir: PathBuf,
    name: String,
}

fn openssl(dir: &Path, args: &[&str]) {
    let (code, out, err) = run(Command::new("openssl").current_dir(dir).args(args));
    assert_eq!(code, 0, "openssl {}: {out}{err}", args.join(" "));
}

impl Ca {
    /// A new self-signed CA (EC P-256, valid two days).
    pub fn new(dir: &Path, name: &str) -> Ca {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    /// The CA certificate (PEM): what a client's `ca_file` names.
    pub fn pem(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A server certificate `<cert>.pem` with key `<cert>.key`, signed by
    /// this CA, for the subject alternative names `san`
    /// (`IP:127.0.0.2`, `DNS:anypop-b.example.net`). Returns (cert, key).
    pub fn issue(&self, cert: &str, san: &str) -> (PathBuf, PathBuf) {
        let ext = write_file(
            &self.dir,
            &format!("{cert}.ext"),
            &format!(
                "subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{cert}.key"),
                "-out",
                &format!("{cert}.csr"),
                "-subj",
                &format!("/CN={cert}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{cert}.csr"),
                "-CA",
                &format!("{}.pem", self.name),
                "-CAkey",
                &format!("{}.key", self.name),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{cert}.pem"),
                "-extfile",
                ext.to_str().expect("utf8 path"),
            ],
        );
        (
            self.dir.join(format!("{cert}.pem")),
            self.dir.join(format!("{cert}.key")),
        )
    }
}

/// A running `stunnel` that accepts TLS on `accept` with `cert`/`key` and
/// forwards the plain bytes to `connect`; killed on drop.
pub struct Stunnel {
    process: Anypop,
}

impl Stunnel {
    /// Starts it (config `stunnel-<port>.conf` in `dir`) and waits until
    /// `accept` takes connections.
    pub fn start(dir: &Path, accept: &str, connect: &str, cert: &Path, key: &Path) -> Stunnel {
        let port = accept.rsplit(':').next().unwrap_or("0");
        let conf = write_file(
            dir,
            &format!("stunnel-{port}.conf"),
            &format!(
                "foreground = yes\npid =\n[api]\naccept = {accept}\nconnect = {connect}\ncert = {}\nkey = {}\n",
                cert.display(),
                key.display()
            ),
        );
        let process = Anypop::start_cmd(Command::new("stunnel4").arg(&conf));
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(accept).is_ok()
        });
        assert!(up, "stunnel on {accept} did not start: {}", process.log());
        Stunnel { process }
    }

    /// What stunnel logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}
