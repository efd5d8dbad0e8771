//! Expected values are dockerd 20.10.24's (Debian's docker.io) own files, captured on this machine
//! with dockerd started inside a private network namespace and mount namespace whose
//! /etc/resolv.conf was a bind mount of `HOST_RESOLV` (or `HOST_RESOLV_LOOPBACK`):
//!
//! ```sh
//! ip netns add dnscap && ip -n dnscap link set lo up
//! nsenter --net=/var/run/netns/dnscap unshare -m sh -c '
//!   mount --bind resolv.in /etc/resolv.conf
//!   dockerd --storage-driver=overlay2 --data-root D --exec-root X -H unix://S &
//!   docker load -i /work/shared/fixtures/docker-save-busybox.tar
//!   docker run --rm --name a1 --hostname h1 --add-host foo:10.1.2.3 --add-host gw:host-gateway \
//!       --add-host multi.example:10.9.9.9 busybox sh -c "cat /etc/hosts /etc/resolv.conf"
//!   ... (each case below names its flags)'
//! ```

use super::*;

const HOST_RESOLV: &str = "# a host resolv.conf for the capture
search example.com lab.internal
nameserver 127.0.0.53
nameserver 192.0.2.53
options edns0 trust-ad
";

const HOST_RESOLV_LOOPBACK: &str = "# a host resolv.conf for the capture
options rotate
nameserver 127.0.0.1
";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn hosts_with_add_host_and_host_gateway() {
    // docker run --hostname h1 --add-host foo:10.1.2.3 --add-host gw:host-gateway
    //   --add-host multi.example:10.9.9.9 (default bridge, 172.17.0.2)
    let add = [
        AddHost::parse("foo:10.1.2.3").expect("add-host"),
        AddHost::parse("gw:host-gateway").expect("add-host"),
        AddHost::parse("multi.example:10.9.9.9").expect("add-host"),
    ];
    let h = Hosts { hostname: "h1", ips: &[ip("172.17.0.2")], add_hosts: &add, host_gateway: Some(ip("172.17.0.1")), ..Default::default() };
    assert_eq!(
        hosts(&h).expect("hosts"),
        "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
10.1.2.3\tfoo
172.17.0.1\tgw
10.9.9.9\tmulti.example
172.17.0.2\th1
"
    );
    let no_gw = Hosts { host_gateway: None, ..h };
    assert!(hosts(&no_gw).is_err(), "host-gateway without a gateway address");
}

#[test]
fn hosts_plain_and_with_domain() {
    // docker run (no flags): the host name is the short ID.
    let h = Hosts { hostname: "39aa66aeeff4", ips: &[ip("172.17.0.2")], ..Default::default() };
    assert_eq!(hosts(&h).expect("hosts"), format!("{HOSTS_HEAD}172.17.0.2\t39aa66aeeff4\n"));
    // docker run --hostname h3.dom.example --domainname zz
    let h = Hosts { hostname: "h3.dom.example", domainname: "zz", ips: &[ip("172.17.0.2")], ..Default::default() };
    assert_eq!(hosts(&h).expect("hosts"), format!("{HOSTS_HEAD}172.17.0.2\th3.dom.example.zz h3\n"));
    // --network none: no address, no own line.
    let h = Hosts { hostname: "x", ..Default::default() };
    assert_eq!(hosts(&h).expect("hosts"), HOSTS_HEAD);
}

fn srv(alias: &str) -> Link {
    Link {
        name: "srv".into(),
        alias: alias.into(),
        hostname: "14cf1797badc".into(),
        ips: vec![ip("172.17.0.2")],
        // docker run -d --name srv -e SECRET=s3 -e OTHER='a b' --expose 80 --expose 53/udp
        //   --expose 8000-8001/tcp busybox sleep 300 (given here out of order)
        ports: vec![(8001, "tcp".into()), (80, "tcp".into()), (53, "udp".into()), (8000, "tcp".into())],
        env: strings(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SECRET=s3", "OTHER=a b", "HOME=/x"]),
    }
}

#[test]
fn hosts_with_links() {
    // docker run --name a6 --link srv:db --link srv (a6 at 172.17.0.3, its host name e7d3c7f6e8a2)
    let links = [srv("srv"), srv("db")];
    let h = Hosts { hostname: "e7d3c7f6e8a2", ips: &[ip("172.17.0.3")], links: &links, ..Default::default() };
    assert_eq!(
        hosts(&h).expect("hosts"),
        format!("{HOSTS_HEAD}172.17.0.2\tsrv 14cf1797badc\n172.17.0.2\tdb 14cf1797badc srv\n172.17.0.3\te7d3c7f6e8a2\n")
    );
}

#[test]
fn link_environment() {
    // The same run, `env | sort` of a6, the DB_ lines (Docker's order is not sorted; compare sets
    // and then the order rules separately).
    let mut got = link_env("a6", &srv("db"));
    let docker = "DB_ENV_OTHER=a b
DB_ENV_SECRET=s3
DB_NAME=/a6/db
DB_PORT=udp://172.17.0.2:53
DB_PORT_53_UDP=udp://172.17.0.2:53
DB_PORT_53_UDP_ADDR=172.17.0.2
DB_PORT_53_UDP_PORT=53
DB_PORT_53_UDP_PROTO=udp
DB_PORT_8000_TCP=tcp://172.17.0.2:8000
DB_PORT_8000_TCP_ADDR=172.17.0.2
DB_PORT_8000_TCP_PORT=8000
DB_PORT_8000_TCP_PROTO=tcp
DB_PORT_8001_TCP=tcp://172.17.0.2:8001
DB_PORT_8001_TCP_ADDR=172.17.0.2
DB_PORT_8001_TCP_PORT=8001
DB_PORT_8001_TCP_PROTO=tcp
DB_PORT_80_TCP=tcp://172.17.0.2:80
DB_PORT_80_TCP_ADDR=172.17.0.2
DB_PORT_80_TCP_PORT=80
DB_PORT_80_TCP_PROTO=tcp";
    assert_eq!(got[0], "DB_PORT=udp://172.17.0.2:53", "the default port comes first");
    assert_eq!(got[got.len() - 3], "DB_NAME=/a6/db");
    assert_eq!(got[got.len() - 2..], ["DB_ENV_SECRET=s3", "DB_ENV_OTHER=a b"], "the child's env, in its order, last");
    got.sort();
    assert_eq!(got.join("\n"), docker);
    assert!(link_env("a6", &srv("srv")).contains(&"SRV_NAME=/a6/srv".to_string()));
}

#[test]
fn link_environment_port_runs_and_aliases() {
    // Three consecutive ports make a run with _START/_END (two do not, as above); the alias is
    // upper-cased with `-` as `_`; TCP comes before UDP on the same number.
    let l = Link {
        name: "web".into(),
        alias: "my-web".into(),
        hostname: "h".into(),
        ips: vec![ip("10.0.0.2")],
        ports: vec![(7000, "tcp".into()), (7001, "tcp".into()), (7002, "tcp".into()), (53, "udp".into()), (53, "tcp".into())],
        env: vec![],
    };
    let env = link_env("app", &l);
    assert_eq!(
        env[..7],
        strings(&[
            "MY_WEB_PORT=tcp://10.0.0.2:53",
            "MY_WEB_PORT_7000_TCP_START=tcp://10.0.0.2:7000",
            "MY_WEB_PORT_7000_TCP_ADDR=10.0.0.2",
            "MY_WEB_PORT_7000_TCP_PROTO=tcp",
            "MY_WEB_PORT_7000_TCP_PORT_START=7000",
            "MY_WEB_PORT_7000_TCP_END=tcp://10.0.0.2:7002",
            "MY_WEB_PORT_7000_TCP_PORT_END=7002",
        ])
    );
    assert_eq!(env[7], "MY_WEB_PORT_53_TCP=tcp://10.0.0.2:53");
    assert_eq!(env[11], "MY_WEB_PORT_53_UDP=udp://10.0.0.2:53");
    assert_eq!(env.last().map(String::as_str), Some("MY_WEB_NAME=/app/my-web"));
    // No ports: only the name.
    let none = Link { ports: vec![], ..l };
    assert_eq!(link_env("app", &none), strings(&["MY_WEB_NAME=/app/my-web"]));
}

#[test]
fn add_host_parsing() {
    assert_eq!(AddHost::parse("h:::1").map(|a| a.addr).ok(), Some(AddHostAddr::Ip(ip("::1"))));
    assert_eq!(AddHost::parse("h:[fd00::1]").map(|a| a.addr).ok(), Some(AddHostAddr::Ip(ip("fd00::1"))));
    assert_eq!(AddHost::parse("h:host-gateway").map(|a| a.addr).ok(), Some(AddHostAddr::HostGateway));
    assert_eq!(AddHost::parse("noaddr").map_err(|e| e.to_string()).err().as_deref(), Some("bad format for add-host: \"noaddr\""));
    assert_eq!(AddHost::parse(":1.2.3.4").map_err(|e| e.to_string()).err().as_deref(), Some("bad format for add-host: \":1.2.3.4\""));
    assert_eq!(AddHost::parse("h:1.2.3").map_err(|e| e.to_string()).err().as_deref(), Some("invalid IP address in add-host: \"1.2.3\""));
}

const BRIDGE: Resolver = Resolver::Host { ipv6: false };

#[test]
fn resolv_conf_default_bridge() {
    let none = DnsFlags::default();
    // docker run (default bridge): the host's file without its loopback resolver, comment kept.
    assert_eq!(
        resolv_conf(HOST_RESOLV, &none, BRIDGE),
        "# a host resolv.conf for the capture
search example.com lab.internal
nameserver 192.0.2.53
options edns0 trust-ad
"
    );
    // Only a loopback resolver on the host: Google's pair appended after a blank line (91 bytes,
    // ending in a newline, as `wc -c` showed).
    let got = resolv_conf(HOST_RESOLV_LOOPBACK, &none, BRIDGE);
    assert_eq!(got, "# a host resolv.conf for the capture\noptions rotate\n\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    assert_eq!(got.len(), 91);
    // IPv6 resolvers go without IPv6, stay with it; the fallback then has the IPv6 pair too.
    let v6 = "nameserver fd00::53\n";
    assert_eq!(resolv_conf(v6, &none, Resolver::Host { ipv6: true }), v6);
    assert_eq!(
        resolv_conf(v6, &none, BRIDGE),
        "\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n",
        "without IPv6 the IPv6 resolver goes, and the fallback comes"
    );
    assert!(resolv_conf("nameserver ::1\n", &none, Resolver::Host { ipv6: true }).contains("nameserver 2001:4860:4860::8888\n"));
    // Blank lines after a removed line go with it, as Docker's pattern eats them.
    assert_eq!(resolv_conf("nameserver 127.0.0.1\n\n\nnameserver 10.0.0.1\n", &none, BRIDGE), "nameserver 10.0.0.1\n");
}

#[test]
fn resolv_conf_with_flags() {
    // docker run --dns 1.1.1.1 --dns 9.9.9.9 --dns-search a.b --dns-search c.d
    //   --dns-option ndots:2 --dns-option timeout:1
    let servers = strings(&["1.1.1.1", "9.9.9.9"]);
    let search = strings(&["a.b", "c.d"]);
    let options = strings(&["ndots:2", "timeout:1"]);
    let all = DnsFlags { servers: &servers, search: &search, options: &options };
    assert_eq!(
        resolv_conf(HOST_RESOLV, &all, BRIDGE),
        "search a.b c.d\nnameserver 1.1.1.1\nnameserver 9.9.9.9\noptions ndots:2 timeout:1\n"
    );
    // docker run --dns-option ndots:3: dockerd 20.10 wrote
    //   "search example.com lab.internal\nnameserver 127.0.0.53\nnameserver 192.0.2.53\noptions ndots:3\n"
    // keeping the host's loopback resolver, useless in the container; we drop it (newer Docker
    // does too). Everything else is the same.
    let ndots3 = strings(&["ndots:3"]);
    assert_eq!(
        resolv_conf(HOST_RESOLV, &DnsFlags { options: &ndots3, ..Default::default() }, BRIDGE),
        "search example.com lab.internal\nnameserver 192.0.2.53\noptions ndots:3\n"
    );
    // docker run --dns-search x.y on the loopback-only host: dockerd 20.10 wrote
    //   "search x.y\nnameserver 127.0.0.1\noptions rotate\n"; we fall back to Google's pair instead.
    let xy = strings(&["x.y"]);
    assert_eq!(
        resolv_conf(HOST_RESOLV_LOOPBACK, &DnsFlags { search: &xy, ..Default::default() }, BRIDGE),
        "search x.y\nnameserver 8.8.8.8\nnameserver 8.8.4.4\noptions rotate\n"
    );
    // `--dns-search .` means no search list.
    let dot = strings(&["."]);
    assert_eq!(
        resolv_conf(HOST_RESOLV, &DnsFlags { search: &dot, ..Default::default() }, BRIDGE),
        "nameserver 192.0.2.53\noptions edns0 trust-ad\n"
    );
}

#[test]
fn resolv_conf_user_network() {
    // Docker's responder is 127.0.0.11 in the container; ours is the network's gateway.
    let ns = Resolver::Embedded(ip("127.0.0.11"));
    // docker network create n1; docker run --network n1
    assert_eq!(
        resolv_conf(HOST_RESOLV, &DnsFlags::default(), ns),
        "search example.com lab.internal\nnameserver 127.0.0.11\noptions edns0 trust-ad ndots:0\n"
    );
    // docker run --network n1 --dns 1.1.1.1 --dns-search a.b --dns-option ndots:2
    let servers = strings(&["1.1.1.1"]);
    let search = strings(&["a.b"]);
    let ndots2 = strings(&["ndots:2"]);
    assert_eq!(
        resolv_conf(HOST_RESOLV, &DnsFlags { servers: &servers, search: &search, options: &ndots2 }, ns),
        "search a.b\nnameserver 127.0.0.11\noptions ndots:2\n"
    );
    // docker run --network n1 --dns-option timeout:2
    let timeout = strings(&["timeout:2"]);
    assert_eq!(
        resolv_conf(HOST_RESOLV, &DnsFlags { options: &timeout, ..Default::default() }, ns),
        "search example.com lab.internal\nnameserver 127.0.0.11\noptions timeout:2 ndots:0\n"
    );
    // The loopback-only host, docker run --network n1.
    assert_eq!(resolv_conf(HOST_RESOLV_LOOPBACK, &DnsFlags::default(), ns), "nameserver 127.0.0.11\noptions rotate ndots:0\n");
    // Ours: the gateway address, and IPv6 resolvers given with --dns listed after it.
    let v6 = strings(&["fd00::53", "10.0.0.53"]);
    assert_eq!(
        resolv_conf("", &DnsFlags { servers: &v6, ..Default::default() }, Resolver::Embedded(ip("172.20.0.1"))),
        "nameserver 172.20.0.1\nnameserver fd00::53\noptions ndots:0\n"
    );
}

#[test]
fn resolv_conf_readers() {
    let text = "search a b # comment\nsearch c\n  nameserver 10.0.0.1  \nnameserver 10.0.0.2 extra\nnameserver fe80::1%eth0\noptions x y\n# options z\n";
    assert_eq!(search_domains(text), strings(&["c"]));
    assert_eq!(search_domains("search a b # c\n"), strings(&["a", "b"]));
    assert_eq!(options(text), strings(&["x", "y"]));
    assert_eq!(nameservers(text), vec![ip("10.0.0.1"), ip("fe80::1")]);
}

#[test]
fn hosts_edited_by_connect_and_disconnect_keep_the_other_lines() {
    let start = "127.0.0.1\tlocalhost\n172.17.0.3\tdb abc123 db1\n172.17.0.2\tabc\n";
    let a: IpAddr = "172.18.0.2".parse().unwrap();
    let connected = edit_hosts(start, "abc", None, Some(a));
    assert_eq!(connected, format!("{start}172.18.0.2\tabc\n"));
    let b: IpAddr = "172.17.0.2".parse().unwrap();
    let back = edit_hosts(&connected, "abc", Some(b), None);
    assert_eq!(back, "127.0.0.1\tlocalhost\n172.17.0.3\tdb abc123 db1\n172.18.0.2\tabc\n");
    // A link line that holds the same address is not the container's own line.
    let linked = edit_hosts(start, "abc", Some("172.17.0.3".parse().unwrap()), None);
    assert_eq!(linked, start);
}
