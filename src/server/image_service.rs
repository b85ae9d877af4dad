//! ImageService: thin hand-offs to `image::Images`.

use super::{BoxStream, CriService, rpc, to_status};
use crate::cri::{self, image_service_server::ImageService};
use crate::image::auth::Credentials;
use crate::image::record::ImageRecord;
use crate::image::{ImageError, Images};
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl ImageService for CriService {
    type StreamImagesStream = BoxStream<cri::StreamImagesResponse>;

    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let filter = filter_of(request.into_inner().filter);
        rpc("ListImages", &filter, async {
            Ok(cri::ListImagesResponse {
                images: self.list(&filter)?,
            })
        })
        .await
    }

    async fn stream_images(
        &self,
        request: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let filter = filter_of(request.into_inner().filter);
        rpc("StreamImages", &filter, async {
            let images = self.list(&filter)?;
            Ok(super::chunked(&images, |images| {
                cri::StreamImagesResponse { images }
            }))
        })
        .await
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = request.image.map(|s| s.image).unwrap_or_default();
        rpc("ImageStatus", &name, async {
            // An absent image is an empty answer, not an error.
            let Some(record) = self.images().resolve(&name).map_err(to_status)? else {
                return Ok(cri::ImageStatusResponse::default());
            };
            let info = if request.verbose {
                verbose_info(&record, self.images())
            } else {
                Default::default()
            };
            Ok(cri::ImageStatusResponse {
                image: Some(record.to_cri()),
                info,
            })
        })
        .await
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let request = request.into_inner();
        let spec = request.image.unwrap_or_default();
        rpc("PullImage", &spec.image, async {
            if spec.image.trim().is_empty() {
                return Err(Status::invalid_argument("image.image is empty"));
            }
            // Images are shared by all handlers, but an unknown one is refused.
            if !spec.runtime_handler.is_empty()
                && self.runtime.handlers.get(&spec.runtime_handler).is_none()
            {
                return Err(Status::invalid_argument(format!(
                    "image.runtime_handler {:?} is not a configured runtime handler",
                    spec.runtime_handler
                )));
            }
            let creds =
                Credentials::from_cri(request.auth.as_ref()).map_err(Status::invalid_argument)?;
            // Detached from the call: a pull whose caller gives up (its
            // deadline passed) finishes into the store instead of stopping
            // half-way, and the next call for the same image finds it.
            let issued_for = Credentials::issued_for(request.auth.as_ref());
            let images = self.runtime.images.clone();
            let name = spec.image.clone();
            let record = tokio::spawn(async move {
                images.pull_with(&name, &creds, issued_for.as_deref()).await
            })
            .await
            .map_err(|e| Status::internal(format!("pull task failed: {e}")))?
            .map_err(to_status)?;
            Ok(cri::PullImageResponse {
                image_ref: record.id,
            })
        })
        .await
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let name = request
            .into_inner()
            .image
            .map(|s| s.image)
            .unwrap_or_default();
        let images = self.runtime.images.clone();
        rpc("RemoveImage", &name.clone(), async move {
            tokio::task::spawn_blocking(move || images.remove(&name))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(to_status)?;
            Ok(cri::RemoveImageResponse {})
        })
        .await
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        rpc("ImageFsInfo", "", async {
            let usage = self.images().fs_usage();
            let fs = cri::FilesystemUsage {
                timestamp: crate::time::now_nanos(),
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: self.images().snapshots().root().display().to_string(),
                }),
                used_bytes: Some(cri::UInt64Value { value: usage.bytes }),
                inodes_used: Some(cri::UInt64Value {
                    value: usage.inodes,
                }),
            };
            Ok(cri::ImageFsInfoResponse {
                image_filesystems: vec![fs],
                container_filesystems: vec![],
            })
        })
        .await
    }
}

impl CriService {
    fn images(&self) -> &Images {
        &self.runtime.images
    }

    fn list(&self, filter: &str) -> Result<Vec<cri::Image>, Status> {
        let records = match self.images().list(Some(filter)) {
            Ok(records) => records,
            // A filter naming nothing valid matches nothing.
            Err(ImageError::Reference(_)) => Vec::new(),
            Err(e) => return Err(to_status(e)),
        };
        Ok(records.iter().map(ImageRecord::to_cri).collect())
    }
}

fn filter_of(filter: Option<cri::ImageFilter>) -> String {
    filter
        .and_then(|f| f.image)
        .map(|s| s.image)
        .unwrap_or_default()
}

/// `info` of a verbose ImageStatus: the image config and where it lives.
fn verbose_info(
    record: &ImageRecord,
    images: &Images,
) -> std::collections::HashMap<String, String> {
    let snapshots: Vec<String> = record
        .chain_ids()
        .map(|c| images.snapshots().fs(c).display().to_string())
        .collect();
    let info = serde_json::json!({
        "imageSpec": record.config,
        "manifestDigest": record.manifest_digest,
        "indexDigest": record.index_digest,
        "chainIDs": record.chain_ids().collect::<Vec<_>>(),
        "snapshots": snapshots,
        "pulledAt": record.pulled_at,
    });
    [("info".to_string(), info.to_string())]
        .into_iter()
        .collect()
}
