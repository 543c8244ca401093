//! A real Orthanc for the tests: a JSON configuration written into a temporary folder (its own
//! storage and index, free DICOM and HTTP ports on loopback, our AE title as its only known
//! modality, every "always allow" off so that an unknown AE title is rejected), started, waited
//! for (REST `/system`), seeded through its REST API, and killed when the guard drops, also when
//! a test panics.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Orthanc's AE title in the tests.
pub const AET: &str = "ORTHANC";
/// Our AE title, known to Orthanc.
pub const OUR_AET: &str = "DELTAWKV";
/// dcmtk's tools call with this AE title (also known to Orthanc).
pub const DCMTK_AET: &str = "DCMTK";

/// How to configure a test Orthanc.
#[derive(Default, Clone)]
pub struct Setup {
    /// Refuse every received instance (a Lua `ReceivedInstanceFilter` returning false).
    pub refuse_storage: bool,
    /// The port our C-MOVE storage SCP listens on (Orthanc's modality entry for us).
    pub move_port: Option<u16>,
    /// DICOM over TLS on Orthanc's DICOM port.
    pub tls: Option<TlsFiles>,
    /// Answer whatever AE title is called (DicomCheckCalledAet off).
    pub any_called_aet: bool,
}

/// Orthanc's DICOM TLS settings (PEM files).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Its certificate (`DicomTlsCertificate`).
    pub certificate: PathBuf,
    /// Its key (`DicomTlsPrivateKey`).
    pub private_key: PathBuf,
    /// The CA it trusts for client certificates (`DicomTlsTrustedCertificates`).
    pub trusted: PathBuf,
    /// Whether a client must present a certificate (`DicomTlsRemoteCertificateRequired`).
    pub client_certificate_required: bool,
}

/// A running Orthanc; killed on drop.
pub struct Orthanc {
    child: Child,
    dir: tempfile::TempDir,
    /// Its DICOM port on 127.0.0.1.
    pub dicom_port: u16,
    /// Its HTTP (REST) port on 127.0.0.1.
    pub http_port: u16,
}

/// The Orthanc binary, or None (skip) outside CI when it is not installed; in CI
/// (`DELTAWKV_CI` set) a missing Orthanc fails the test.
pub fn binary() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("/usr/sbin/Orthanc"),
        PathBuf::from("/usr/bin/Orthanc"),
    ];
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return Some(found.clone());
    }
    if std::env::var_os("DELTAWKV_CI").is_some() {
        panic!("Orthanc is not installed (Debian package `orthanc`; scripts/install-deps.sh)");
    }
    eprintln!("skipping: Orthanc is not installed (apt-get install orthanc); DELTAWKV_CI is unset");
    None
}

/// dcmtk's `tool` (findscu, ...), with the same rule as [`binary`].
pub fn dcmtk(tool: &str) -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin").join(tool);
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("DELTAWKV_CI").is_some() {
        panic!("dcmtk's {tool} is not installed (Debian package `dcmtk`)");
    }
    eprintln!("skipping: dcmtk's {tool} is not installed; DELTAWKV_CI is unset");
    None
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Orthanc {
    /// Starts an Orthanc (None: skipped, see [`binary`]).
    pub fn start(setup: &Setup) -> Option<Orthanc> {
        let bin = binary()?;
        // A port taken between our probe and Orthanc's bind: try again with new ports.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin, setup) {
                Ok(o) => return Some(o),
                Err(e) => last = e,
            }
        }
        panic!("Orthanc did not start: {last}");
    }

    fn try_start(bin: &Path, setup: &Setup) -> Result<Orthanc, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (dicom_port, http_port) = (free_port(), free_port());
        let mut config = serde_json::json!({
            "Name": "deltawkv-test",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": AET,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomCheckCalledAet": !setup.any_called_aet,
            "DicomAlwaysAllowEcho": false,
            "DicomAlwaysAllowStore": false,
            "DicomAlwaysAllowFind": false,
            "DicomAlwaysAllowFindWorklist": false,
            "DicomAlwaysAllowGet": false,
            "DicomAlwaysAllowMove": false,
            "DicomCheckModalityHost": false,
            "DicomModalities": {
                "deltawkv": { "AET": OUR_AET, "Host": "127.0.0.1",
                              "Port": setup.move_port.unwrap_or(104) },
                "dcmtk": { "AET": DCMTK_AET, "Host": "127.0.0.1", "Port": 104 },
            },
            "DicomAssociationCloseDelay": 0,
            "DicomScpTimeout": 10,
            "ConcurrentJobs": 1,
            "SaveJobs": false,
            "StorageCompression": false,
            "Plugins": [],
            "LuaScripts": [],
        });
        if let Some(tls) = &setup.tls {
            config["DicomTlsEnabled"] = true.into();
            config["DicomTlsCertificate"] = serde_json::json!(tls.certificate);
            config["DicomTlsPrivateKey"] = serde_json::json!(tls.private_key);
            config["DicomTlsTrustedCertificates"] = serde_json::json!(tls.trusted);
            config["DicomTlsRemoteCertificateRequired"] = tls.client_certificate_required.into();
        }
        if setup.refuse_storage {
            let lua = dir.path().join("refuse.lua");
            std::fs::write(
                &lua,
                // Orthanc 1.10 answers Success to an instance the filter drops (returns false);
                // an error in the filter makes it answer A700H (refused: out of resources).
                "function ReceivedInstanceFilter(dicom, origin, info)\n  \
                 error(\"refused by the test filter\")\nend\n",
            )
            .expect("write lua");
            config["LuaScripts"] = serde_json::json!([lua]);
        }
        let config_path = dir.path().join("orthanc.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let log = std::fs::File::create(dir.path().join("orthanc.log")).expect("log file");
        let child = Command::new(bin)
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut orthanc = Orthanc {
            child,
            dir,
            dicom_port,
            http_port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = orthanc.child.try_wait() {
                return Err(format!("Orthanc exited ({status}):\n{}", orthanc.log()));
            }
            // (A TLS port is probed by TCP connect only: DCMTK logs the aborted handshake.)
            if orthanc
                .http("GET", "/system", None)
                .is_ok_and(|(c, _)| c == 200)
                && TcpStream::connect(("127.0.0.1", dicom_port)).is_ok()
            {
                return Ok(orthanc);
            }
            if Instant::now() > deadline {
                return Err(format!("Orthanc not ready in 30 s:\n{}", orthanc.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `AET@127.0.0.1:PORT` for `--pacs`.
    pub fn node(&self) -> String {
        format!("{AET}@127.0.0.1:{}", self.dicom_port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orthanc.log")).unwrap_or_default()
    }

    /// One HTTP request to its REST API: (status code, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let body = body.unwrap_or(&[]);
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\
             Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
        Ok((code, raw[split + 4..].to_vec()))
    }

    /// GET a REST resource as JSON (panics on a non-200 answer).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.http("GET", path, None).expect("REST request");
        assert_eq!(code, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("JSON answer")
    }

    /// POST a REST resource, JSON body and answer.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let (code, out) = self
            .http("POST", path, Some(body.to_string().as_bytes()))
            .expect("REST request");
        assert_eq!(code, 200, "POST {path}: {}", String::from_utf8_lossy(&out));
        serde_json::from_slice(&out).expect("JSON answer")
    }

    /// Uploads every file of `folder` through REST (`POST /instances`); returns how many.
    pub fn seed(&self, folder: &Path) -> usize {
        let mut n = 0;
        for f in dicom_files(folder) {
            let bytes = std::fs::read(&f).expect("read fixture");
            let (code, body) = self
                .http("POST", "/instances", Some(&bytes))
                .expect("upload");
            assert_eq!(
                code,
                200,
                "upload {}: {}",
                f.display(),
                String::from_utf8_lossy(&body)
            );
            n += 1;
        }
        n
    }

    /// The Orthanc ID of a series by its SeriesInstanceUID, if stored.
    pub fn series_id(&self, series_uid: &str) -> Option<String> {
        let found = self.post_json(
            "/tools/find",
            &serde_json::json!({"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}}),
        );
        found.as_array()?.first()?.as_str().map(str::to_string)
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The regular files of a folder, sorted.
pub fn dicom_files(folder: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(folder)
        .expect("read folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// PEM files of a throwaway PKI: `ca` signs `server` (for 127.0.0.1 and localhost) and
/// `client`; `wrong_ca` is another CA that signs nothing of them.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub wrong_ca: PathBuf,
    pub server_crt: PathBuf,
    pub server_key: PathBuf,
    pub client_crt: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the PKI, or None (skip) when openssl is missing outside CI.
pub fn pki() -> Option<Pki> {
    if Command::new("openssl").arg("version").output().is_err() {
        if std::env::var_os("DELTAWKV_CI").is_some() {
            panic!("openssl is not installed");
        }
        eprintln!("skipping: openssl is not installed");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("leaf.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("write extensions");
    for ca in ["ca", "wrong_ca"] {
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN=deltawkv test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    for leaf in ["server", "client"] {
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{leaf}.key"),
                "-out",
                &format!("{leaf}.csr"),
                "-subj",
                &format!("/CN=deltawkv test {leaf}"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{leaf}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{leaf}.crt"),
                "-days",
                "2",
                "-extfile",
                "leaf.cnf",
            ],
        );
    }
    Some(Pki {
        ca: d.join("ca.crt"),
        wrong_ca: d.join("wrong_ca.crt"),
        server_crt: d.join("server.crt"),
        server_key: d.join("server.key"),
        client_crt: d.join("client.crt"),
        client_key: d.join("client.key"),
        _dir: dir,
    })
}
