//! Container networks: bridges, veth pairs, addresses and routes over rtnetlink, address pools,
//! published ports and NAT in berth's own netfilter table.

pub mod config;
pub mod docker;
pub mod ipam;
pub mod netlink;
pub mod network;
pub mod nft;
pub mod ports;
