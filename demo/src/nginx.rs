//! The reverse proxy's configuration: a real Debian nginx in front of the LoadBalancer IP, as Nginx
//! Proxy Manager runs in the reference cluster. Pure: returns the file's text.
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

use std::net::Ipv4Addr;
use std::path::Path;

/// Idle upstream connections kept per worker with keep-alive on.
pub const UPSTREAM_POOL: u32 = 8;

/// The nginx configuration for a proxy listening on `listen:80` and forwarding to `upstream:port`.
pub fn config(run_dir: &Path, listen: Ipv4Addr, upstream: Ipv4Addr, port: u16, upstream_keepalive: bool) -> String {
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

    upstream wordpress {{
        server {upstream}:{port};
{pool}    }}

    server {{
        listen {listen}:80;
        location / {{
            proxy_pass http://wordpress;
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

    #[test]
    fn without_upstream_keepalive_each_request_opens_a_connection() {
        let text =
            config(Path::new("/run/bkd"), Ipv4Addr::new(198, 18, 0, 3), Ipv4Addr::new(198, 18, 0, 100), 80, false);
        assert!(text.contains("listen 198.18.0.3:80;"));
        assert!(text.contains("server 198.18.0.100:80;"));
        assert!(text.contains("proxy_http_version 1.0;"));
        assert!(!text.contains("keepalive 8"), "{text}");
        assert!(!text.contains("/etc/nginx") && !text.contains("include"), "nothing from the system nginx");
        assert!(text.contains("pid /run/bkd/nginx.pid;"));
    }

    #[test]
    fn with_upstream_keepalive_a_pool_is_kept_over_http_1_1() {
        let text = config(Path::new("/r"), Ipv4Addr::new(198, 18, 0, 3), Ipv4Addr::new(198, 18, 0, 100), 80, true);
        assert!(text.contains("keepalive 8;"));
        assert!(text.contains("proxy_http_version 1.1;") && text.contains("proxy_set_header Connection \"\";"));
    }

    #[test]
    fn braces_balance() {
        for keepalive in [false, true] {
            let text = config(Path::new("/r"), Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 80, keepalive);
            assert_eq!(text.matches('{').count(), text.matches('}').count());
        }
    }
}
