//! `pop3d db migrate` end to end against a real PostgreSQL (pop3-testkit's throwaway
//! cluster; skipped loudly without PostgreSQL, failed under CI=true), and its exit codes.

mod common;

use std::path::Path;

use common::{run, Session};

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

    // A password in a world-readable configuration is pointed out.
    let config = write_config(
        dir.path(),
        &format!("[postgresql]\nurl = \"postgresql://pop3d:pw@127.0.0.1:{port}/mail\"\n"),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let readable = run(&["--config", &config, "check-config"], dir.path(), b"");
    let err = String::from_utf8_lossy(&readable.stderr);
    assert!(err.contains("world-readable") && !err.contains(":pw@"), "{err}");
}

/// A data dir whose users come from `[users] sql` at `url`, with quick failure delays (the
/// test's logins all come from 127.0.0.1).
fn sql_data_dir(url: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::output_ok(&run(&["init"], &data, b""), "init");
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    let query = "SELECT password, home FROM mailbox WHERE username = $1 AND active";
    let config = config
        .replace("file = \"users\"\n", &format!("file = \"users\"\nsql = \"{query}\"\n"))
        + &format!("\n[postgresql]\nurl = \"{url}\"\n");
    let config = config
        .replace("auth_failure_delay_ms = 2000", "auth_failure_delay_ms = 10")
        .replace("auth_penalty_initial_ms = 2000", "auth_penalty_initial_ms = 10")
        .replace("auth_penalty_max_ms = 15000", "auth_penalty_max_ms = 20");
    assert!(config.contains("sql = ") && config.contains("auth_penalty_max_ms = 20"));
    std::fs::write(data.join("pop3d.toml"), config).unwrap();
    (dir, data)
}

#[test]
fn users_from_a_password_query_log_in_and_get_mail() {
    let Some(cluster) = pop3_testkit::postgres::cluster("pop3d [users] sql") else { return };
    let url = cluster.database();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    // PostfixAdmin's `mailbox` table, reduced to what the query reads.
    client
        .batch_execute(
            "CREATE TABLE mailbox (username text PRIMARY KEY, password text NOT NULL, \
             active boolean NOT NULL DEFAULT true, home text)",
        )
        .unwrap();
    let argon = pop3_server::hash_password(b"carol's pw");
    let insert = "INSERT INTO mailbox (username, password, active) VALUES ($1, $2, $3)";
    for (user, password, active) in [
        ("alice", "{PLAIN}secret", true),
        ("carol", argon.as_str(), true),
        ("eve", "{PLAIN}gone", false),
    ] {
        client.execute(insert, &[&user, &password, &active]).unwrap();
    }
    let (dir, data) = sql_data_dir(&url);
    common::output_ok(&run(&["db", "migrate"], &data, b""), "db migrate");
    let check = run(&["check-config"], &data, b"");
    common::output_ok(&check, "check-config runs the query");

    // Local delivery looks recipients up with the same query.
    common::output_ok(&run(&["deliver", "alice"], &data, b"Subject: hi\n\nhello\n"), "deliver");
    let unknown = run(&["deliver", "mallory"], &data, b"Subject: hi\n\nhello\n");
    assert_eq!(unknown.status.code(), Some(67), "unknown user: {unknown:?}");
    // A query PostgreSQL refuses is a configuration error for check-config.
    let config = std::fs::read_to_string(data.join("pop3d.toml")).unwrap();
    let broken = config.replace("FROM mailbox", "FROM no_such_table");
    std::fs::write(data.join("pop3d.toml"), &broken).unwrap();
    let bad = run(&["check-config"], &data, b"");
    assert_eq!(bad.status.code(), Some(78), "a broken query: {bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_table"), "{bad:?}");
    std::fs::write(data.join("pop3d.toml"), &config).unwrap();
    let managed = run(&["user", "add", "bob", "--password-stdin"], &data, b"pw\n");
    assert_eq!(managed.status.code(), Some(78), "users are managed in SQL: {managed:?}");

    let daemon = common::Daemon::serve(dir, data);
    let addr = daemon.plain.clone();
    assert!(Session::login(&addr, "alice", "secret").starts_with("+OK maildrop has 1 "));
    assert!(Session::login(&addr, "carol", "carol's pw").starts_with("+OK"), "{}", daemon.log());
    assert!(Session::login(&addr, "alice", "wrong").starts_with("-ERR [AUTH]"));
    assert!(Session::login(&addr, "eve", "gone").starts_with("-ERR [AUTH]"), "inactive");
    assert!(Session::login(&addr, "nobody", "x").starts_with("-ERR [AUTH]"));
    // A name that would break out of an interpolated string is only ever a parameter.
    assert!(Session::login(&addr, "x'OR'1'='1", "secret").starts_with("-ERR [AUTH]"));
    assert!(Session::login(&addr, "alice", "secret").starts_with("+OK"), "still served");
}

#[test]
fn a_users_database_that_is_down_is_a_temporary_failure_never_a_login() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (dir, data) = sql_data_dir(&format!("postgresql://pop3d@127.0.0.1:{port}/mail"));
    let check = run(&["check-config"], &data, b"");
    assert_eq!(check.status.code(), Some(75), "check-config: {check:?}");
    let deliver = run(&["deliver", "alice"], &data, b"Subject: hi\n\nhello\n");
    assert_eq!(deliver.status.code(), Some(75), "deliver retries later: {deliver:?}");
    // serve wants its database at start: exit 75, and the service manager tries again.
    let serve = run(&["serve", "--listen", "127.0.0.1:0"], &data, b"");
    assert_eq!(serve.status.code(), Some(75), "serve: {serve:?}");
    drop(dir);
}
