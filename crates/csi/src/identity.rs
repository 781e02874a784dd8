//! The Identity service: who we are and what we offer. Shared by both drivers.

use tonic::{Request, Response, Status};

use crate::Driver;
use crate::proto::identity_server::Identity;
use crate::proto::plugin_capability::{Service, VolumeExpansion, service, volume_expansion};
use crate::proto::*;

/// Identity service of one driver.
#[derive(Debug, Clone)]
pub struct IdentityService {
    driver: Driver,
}

impl IdentityService {
    pub fn new(driver: Driver) -> Self {
        IdentityService { driver }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.driver.name().to_string(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let service = |t: service::Type| PluginCapability {
            r#type: Some(plugin_capability::Type::Service(Service {
                r#type: t as i32,
            })),
        };
        let mut capabilities = vec![
            service(service::Type::ControllerService),
            service(service::Type::VolumeAccessibilityConstraints),
        ];
        if self.driver == Driver::Lvm {
            capabilities.push(PluginCapability {
                r#type: Some(plugin_capability::Type::VolumeExpansion(VolumeExpansion {
                    r#type: volume_expansion::Type::Online as i32,
                })),
            });
        }
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}
