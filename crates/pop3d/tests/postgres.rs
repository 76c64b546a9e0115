//! `pop3d db migrate` end to end against a real PostgreSQL (pop3-testkit's throwaway
//! cluster; skipped loudly without PostgreSQL, failed under CI=true), and its exit codes.

mod common;

use std::path::Path;

use common::run;

fn write_config(dir: &Path, postgresql: &str) -> String {
    let path = dir.join("pop3d.toml");
    std::fs::write(&path, postgresql).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn db_migrate_creates_the_schema_then_has_nothing_to_do() {
    let Some(cluster) = pop3_testkit::postgres::cluster("pop3d db migrate") else { return };
    let url = cluster.database();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("[postgresql]\nurl = \"{url}\"\n"));

    let first = run(&["--config", &config, "db", "migrate"], dir.path(), b"");
    common::output_ok(&first, "db migrate");
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(said.contains("schema migrated from version 0 to"), "{said}");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    for table in ["schema_version", "mailboxes", "messages", "message_chunks"] {
        let found: bool =
            client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).unwrap().get(0);
        assert!(found, "table {table}");
    }

    let second = run(&["--config", &config, "db", "migrate"], dir.path(), b"");
    common::output_ok(&second, "db migrate again");
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(said.contains("nothing to do"), "{said}");
}

#[test]
fn db_migrate_exit_codes_say_retry_later_or_fix_the_config() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on a port the kernel just handed out and took back: refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = write_config(
        dir.path(),
        &format!("[postgresql]\nurl = \"postgresql://pop3d:pw@127.0.0.1:{port}/mail\"\n"),
    );
    let down = run(&["--config", &config, "db", "migrate"], dir.path(), b"");
    assert_eq!(down.status.code(), Some(75), "EX_TEMPFAIL: {down:?}");
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(err.contains("cannot reach the PostgreSQL server"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")) && !err.contains(":pw@"), "{err}");

    let config = write_config(dir.path(), "[postgresql]\nurl = \"postgresql://db:port/mail\"\n");
    let bad = run(&["--config", &config, "db", "migrate"], dir.path(), b"");
    assert_eq!(bad.status.code(), Some(78), "EX_CONFIG: {bad:?}");
    let check = run(&["--config", &config, "check-config"], dir.path(), b"");
    assert_eq!(check.status.code(), Some(78), "check-config validates the URL: {check:?}");
    assert!(String::from_utf8_lossy(&check.stderr).contains("[postgresql] url"));

    let config = write_config(dir.path(), "");
    let none = run(&["--config", &config, "db", "migrate"], dir.path(), b"");
    assert_eq!(none.status.code(), Some(78), "no [postgresql]: {none:?}");
    assert!(String::from_utf8_lossy(&none.stderr).contains("no [postgresql] section"));
}

#[test]
fn check_config_connects_and_wants_the_schema_of_this_build() {
    let Some(cluster) = pop3_testkit::postgres::cluster("pop3d check-config") else { return };
    let url = cluster.database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "").unwrap();
    let config = write_config(dir.path(), &format!("[postgresql]\nurl = \"{url}\"\n"));

    let behind = run(&["--config", &config, "check-config"], dir.path(), b"");
    assert_eq!(behind.status.code(), Some(78), "a schema behind: {behind:?}");
    let err = String::from_utf8_lossy(&behind.stderr);
    assert!(err.contains("schema version 0") && err.contains("pop3d db migrate"), "{err}");

    common::output_ok(&run(&["--config", &config, "db", "migrate"], dir.path(), b""), "migrate");
    let ok = run(&["--config", &config, "check-config"], dir.path(), b"");
    common::output_ok(&ok, "check-config after db migrate");
    let said = String::from_utf8_lossy(&ok.stdout);
    let latest = pop3_storage::postgres::LATEST_VERSION;
    assert!(said.contains(&format!("schema version {latest}")), "{said}");

    // The database down: try again later (75), not a configuration error.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = write_config(
        dir.path(),
        &format!("[postgresql]\nurl = \"postgresql://pop3d@127.0.0.1:{port}/mail\"\n"),
    );
    let down = run(&["--config", &config, "check-config"], dir.path(), b"");
    assert_eq!(down.status.code(), Some(75), "EX_TEMPFAIL: {down:?}");
}
