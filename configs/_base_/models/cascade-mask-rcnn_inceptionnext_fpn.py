# Cascade Mask R-CNN with FPN on InceptionNeXt-T, with the ConvNeXt recipe's heads (mmdet's
# convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py): three stages of
# 4conv1fc bbox heads with SyncBN and GIoU loss (reg_decoded_bbox), IoU thresholds 0.5/0.6/0.7.
# Everything else (backbone, neck, RPN, test settings) is the Mask R-CNN base's. Channel sizes and sampler
# sizes are written out per stage so that --cfg-options can reach each of them.
_base_ = ['./mask-rcnn_inceptionnext_fpn.py']


def _bbox_head(stds):
    return dict(
        type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1, in_channels=256, conv_out_channels=256,
        fc_out_channels=1024, roi_feat_size=7, num_classes=80,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
        reg_class_agnostic=False, reg_decoded_bbox=True, norm_cfg=_base_.norm_cfg,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


def _rcnn_stage(iou):
    return dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                      match_low_quality=False, ignore_iof_thr=-1),
        sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                     add_gt_as_proposals=True),
        mask_size=28, pos_weight=-1, debug=False)


model = dict(
    type='CascadeRCNN',
    rpn_head=dict(loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        _delete_=True, type='CascadeRoIHead', num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256, featmap_strides=[4, 8, 16, 32]),
        bbox_head=[_bbox_head([0.1, 0.1, 0.2, 0.2]), _bbox_head([0.05, 0.05, 0.1, 0.1]),
                   _bbox_head([0.033, 0.033, 0.067, 0.067])],
        mask_roi_extractor=dict(
            type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=256, featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead', num_convs=4, in_channels=256, conv_out_channels=256, num_classes=80,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(allowed_border=0),
        rpn_proposal=dict(max_per_img=2000),
        rcnn=[_rcnn_stage(0.5), _rcnn_stage(0.6), _rcnn_stage(0.7)]))
