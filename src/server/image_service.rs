//! ImageService: pulls, lists, inspects and removes images. Until the image
//! store lands, each call answers `Unimplemented` naming the RPC.

use super::{BoxStream, CriService, unimplemented};
use crate::cri::{self, image_service_server::ImageService};
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl ImageService for CriService {
    type StreamImagesStream = BoxStream<cri::StreamImagesResponse>;

    async fn list_images(
        &self,
        _: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        unimplemented("ListImages").await
    }

    async fn stream_images(
        &self,
        _: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        unimplemented("StreamImages").await
    }

    async fn image_status(
        &self,
        _: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        unimplemented("ImageStatus").await
    }

    async fn pull_image(
        &self,
        _: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        unimplemented("PullImage").await
    }

    async fn remove_image(
        &self,
        _: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        unimplemented("RemoveImage").await
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        unimplemented("ImageFsInfo").await
    }
}
