//! Container networks: bridges, veth pairs, addresses and routes over rtnetlink, address pools,
//! published ports and NAT in berth's own netfilter table; what the agent writes into
//! containers (`files`) and the DNS it serves them (`dns`).

pub mod config;
pub mod dns;
pub mod docker;
pub mod files;
pub mod ipam;
pub mod netlink;
pub mod network;
pub mod nft;
pub mod ports;
