//! The reverse proxies' configuration: a real Debian nginx, as Nginx Proxy Manager runs in the
//! reference cluster, either outside the cluster in front of the LoadBalancer IP (`[proxy]`) or in a
//! pod of its own, relaying to a web workload's ClusterIP (a workload with `app = "proxy"`). Pure:
//! returns the file's text.
//!
//! Every path nginx writes (pid file, logs, temp directories) is under the run's own directory, and
//! the file includes nothing from `/etc/nginx`, so the system's nginx and its default site are never
//! touched.
//!
//! Upstream keep-alive: NPM's generated proxy hosts use `proxy_pass` without an upstream pool, which
//! opens one new upstream connection per request (nginx speaks HTTP/1.0 upstream by default and
//! closes). kube-proxy balances per connection, so this spreads requests evenly. With
//! `upstream_keepalive`, nginx keeps a pool of idle upstream connections (`keepalive` in the
//! upstream block, HTTP/1.1 and an empty `Connection` header, as the nginx docs for
//! `ngx_http_upstream_module` require) and requests follow the few pooled connections.

use std::net::SocketAddrV4;
use std::path::Path;

/// Idle upstream connections kept per worker with keep-alive on.
pub const UPSTREAM_POOL: u32 = 8;

/// The nginx configuration for a proxy listening on `listen` and forwarding every request to
/// `upstream`; everything it writes goes to `run_dir`.
pub fn config(run_dir: &Path, listen: SocketAddrV4, upstream: SocketAddrV4, upstream_keepalive: bool) -> String {
    let dir = run_dir.display();
    let (pool, protocol) = if upstream_keepalive {
        (
            format!("        keepalive {UPSTREAM_POOL};\n"),
            "            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n",
        )
    } else {
        (String::new(), "            proxy_http_version 1.0;\n")
    };
    format!(
        "# bakery-demo: generated for one run; nothing is taken from the system nginx configuration.
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000;

    upstream backend {{
        server {upstream};
{pool}    }}

    server {{
        listen {listen};
        location / {{
            proxy_pass http://backend;
{protocol}            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(std::net::Ipv4Addr::new(a, b, c, d), port)
    }

    #[test]
    fn without_upstream_keepalive_each_request_opens_a_connection() {
        let text = config(Path::new("/run/bkd"), at(198, 18, 0, 3, 80), at(198, 18, 0, 100, 80), false);
        assert!(text.contains("listen 198.18.0.3:80;"));
        assert!(text.contains("server 198.18.0.100:80;"));
        assert!(text.contains("proxy_http_version 1.0;"));
        assert!(!text.contains("keepalive 8"), "{text}");
        assert!(!text.contains("/etc/nginx") && !text.contains("include"), "nothing from the system nginx");
        assert!(text.contains("pid /run/bkd/nginx.pid;"));
    }

    #[test]
    fn with_upstream_keepalive_a_pool_is_kept_over_http_1_1() {
        let text = config(Path::new("/r"), at(198, 18, 0, 3, 80), at(198, 18, 0, 100, 80), true);
        assert!(text.contains("keepalive 8;"));
        assert!(text.contains("proxy_http_version 1.1;") && text.contains("proxy_set_header Connection \"\";"));
    }

    #[test]
    fn an_in_cluster_proxy_listens_on_its_pod_address_and_relays_to_a_cluster_ip() {
        let text = config(Path::new("/r/npm"), at(198, 19, 5, 10, 81), at(198, 18, 1, 10, 8080), false);
        assert!(text.contains("listen 198.19.5.10:81;") && text.contains("server 198.18.1.10:8080;"), "{text}");
        assert!(text.contains("pid /r/npm/nginx.pid;"));
    }

    #[test]
    fn braces_balance() {
        for keepalive in [false, true] {
            let text = config(Path::new("/r"), at(127, 0, 0, 1, 80), at(127, 0, 0, 1, 8080), keepalive);
            assert_eq!(text.matches('{').count(), text.matches('}').count());
        }
    }
}
