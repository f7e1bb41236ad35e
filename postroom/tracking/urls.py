from django.urls import path

from postroom.tracking import views

urlpatterns = [
    path("o/<str:token>.gif", views.open_pixel, name="open_pixel"),
    path("c/<str:token>", views.click, name="click"),
]
